"""Replaying many jobs without flattening what they call: batches, a rate, a canary.

Replaying 50,000 dead letters at once hands 50,000 calls to a downstream
service that has just recovered. These pieces let a caller stream the jobs in
batches (memory and query count bounded by the batch, not the job count), pace
the batches at a rate, and replay a few jobs first and wait for their outcome.
``replay`` puts them together, for ``replay_dead_letters`` or any other front
door. The state changes themselves, and the keyset batching ``id_batches``,
are ``outbox.transitions``'.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError
from django.db.models import QuerySet

from critical_path.models import Job, JobQuerySet
from critical_path.outbox import transitions
from critical_path.outbox.transitions import id_batches as id_batches  # the replay command batches with it


def paced_batch_size(batch_size: int, rate: float | None) -> int:
    """Batches of about one second's worth of jobs at ``rate``, so a throttled replay is smooth, not bursty."""
    if rate is None:
        return batch_size
    return max(1, min(batch_size, math.ceil(rate)))


def schedule(total: int, batch_size: int, rate: float | None) -> list[tuple[float, int]]:
    """When each batch of a replay of ``total`` jobs starts (seconds from the start) and how many it holds.

    Batch ``i`` starts once the jobs before it fit the rate: at (jobs before
    it) / ``rate`` seconds. Without a rate every batch starts at 0 (at once).
    """
    size = paced_batch_size(batch_size, rate)
    plan, done = [], 0
    while done < total:
        count = min(size, total - done)
        plan.append((done / rate if rate else 0.0, count))
        done += count
    return plan


@dataclass
class Throttle:
    """Holds each batch back until the jobs before it fit ``rate`` jobs per second; clock and sleep injectable."""

    rate: float | None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    started: float | None = field(default=None, init=False)

    def wait(self, done: int) -> float:
        """Sleep until a batch following ``done`` jobs may start; returns the seconds slept."""
        if self.started is None:
            self.started = self.clock()
        if not self.rate:
            return 0.0
        delay = self.started + done / self.rate - self.clock()
        if delay <= 0:
            return 0.0
        self.sleep(delay)
        return delay


#: Statuses in which a replayed job has shown how it fares: success, or an attempt that failed.
SETTLED = {Job.Status.SUCCEEDED, Job.Status.COALESCED, Job.Status.FAILED, Job.Status.DEAD, Job.Status.DISCARDED}
#: Settled statuses that count as success: a coalesced job's work is done by the newer job that absorbed it.
SUCCESSFUL = {Job.Status.SUCCEEDED, Job.Status.COALESCED}


@dataclass
class CanaryResult:
    """How the canary jobs fared: all succeeded, some did not, or some had not finished by the deadline."""

    succeeded: list[int]
    failed: list[int]
    unfinished: list[int]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unfinished


def await_jobs(
    ids: list[int],
    *,
    using: str,
    timeout: float,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryResult:
    """Poll the database until each of ``ids`` succeeds or fails an attempt, or ``timeout`` seconds pass.

    A job that fails an attempt counts as failed at once, without waiting for
    its retries: a canary is there to stop a replay early, not to heal.
    """
    deadline = clock() + timeout
    while True:
        states = _states(Job.objects.using(using).filter(pk__in=ids))
        failed = sorted(pk for pk, status in states.items() if status in SETTLED - SUCCESSFUL)
        unfinished = sorted(pk for pk in ids if states.get(pk) not in SETTLED)
        if not unfinished or clock() >= deadline:
            succeeded = sorted(pk for pk, status in states.items() if status in SUCCESSFUL)
            return CanaryResult(succeeded, failed, unfinished)
        sleep(min(interval, max(0.0, deadline - clock())))


def _states(jobs: QuerySet[Job]) -> dict[int, str]:
    return dict(jobs.values_list("pk", "status"))


@dataclass
class Summary:
    """What a replay did so far: jobs replayed, skipped, failed, and how its canary fared."""

    replayed: int = 0
    #: Changed by another process meanwhile (replayed, discarded or run): the compare-and-set left them alone.
    skipped: int = 0
    #: In a batch whose transaction raised a database error; ``errors`` says which and why.
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    canary: CanaryResult | None = None

    @property
    def handled(self) -> int:
        return self.replayed + self.skipped + self.failed

    def __str__(self) -> str:
        return (
            f"{self.replayed} replayed, {self.skipped} skipped (changed by another process meanwhile), "
            f"{self.failed} failed."
        )


class Listener:
    """What ``replay`` reports as it goes, for a front door to show; each hook does nothing here."""

    def canary_replayed(self, ids: list[int], timeout: float) -> None:
        """The canary's jobs are replayed; ``replay`` now waits up to ``timeout`` seconds for them."""

    def canary_succeeded(self, result: CanaryResult) -> None:
        """Every canary job succeeded; the rest follows."""

    def progressed(self, summary: Summary) -> None:
        """The canary or a batch is done; ``summary`` counts every job handled so far."""


def replay(
    jobs: JobQuerySet,
    *,
    using: str,
    limit: int | None = None,
    batch_size: int = 500,
    rate: float | None = None,
    canary: int | None = None,
    canary_timeout: float = 300.0,
    listener: Listener | None = None,
) -> Summary:
    """Replay ``jobs`` of database ``using``, lowest ids first and at most ``limit`` of them, canary included.

    With ``canary``, that many jobs are replayed first and awaited up to
    ``canary_timeout`` seconds; unless every one succeeds, nothing else is
    replayed and the summary's ``canary`` says which failed or did not finish.
    The rest goes in batches of ``batch_size`` jobs, or of one second's worth at
    ``rate`` jobs per second, each batch one transaction. A batch whose
    transaction raises a database error counts as failed, and the next goes on.
    """
    listener = listener or Listener()
    summary = Summary()
    if canary:
        size = canary if limit is None else min(canary, limit)
        ids = next(id_batches(jobs, size, size), [])
        _replay_batch(ids, using, batch_size, summary)
        listener.canary_replayed(ids, canary_timeout)
        summary.canary = await_jobs(ids, using=using, timeout=canary_timeout)
        if not summary.canary.ok:
            return summary
        listener.canary_succeeded(summary.canary)
        listener.progressed(summary)
        if limit is not None:
            limit -= len(ids)
    throttle, done = Throttle(rate), 0
    for batch in id_batches(jobs, paced_batch_size(batch_size, rate), limit):
        throttle.wait(done)
        _replay_batch(batch, using, batch_size, summary)
        done += len(batch)
        listener.progressed(summary)
    return summary


def _replay_batch(ids: list[int], using: str, batch_size: int, summary: Summary) -> None:
    try:
        count = transitions.replay(ids, using=using, batch_size=batch_size)
    except DatabaseError as exc:
        summary.failed += len(ids)
        summary.errors.append(f"ids {ids[0]} to {ids[-1]}: {type(exc).__name__}: {exc}".strip())
        return
    summary.replayed += count
    summary.skipped += len(ids) - count
