"""Replaying many jobs without flattening what they call: batches, a rate, a canary.

Replaying 50,000 dead letters at once hands 50,000 calls to a downstream
service that has just recovered. These pieces let a caller stream the jobs in
batches (memory and query count bounded by the batch, not the job count), pace
the batches at a rate, and replay a few jobs first and wait for their outcome.
The state changes themselves, and the keyset batching ``id_batches``, are
``outbox.transitions``'.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import QuerySet

from critical_path.models import Job
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
