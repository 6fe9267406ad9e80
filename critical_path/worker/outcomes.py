"""A failed attempt, recorded: retried after a backoff, or dead-lettered, with its error history.

Two callers with two contracts share ``_record()``: the worker's ``fail()``, for
an attempt it holds, and the relay's ``rescue()``, for an attempt whose worker
is gone and whose lease is over. Either way the move is one compare-and-set
UPDATE on the job's row under that attempt's claim (``Job.claims``); a row count
of 0 means someone else moved it first, which each function reports in its own
way. A connection that breaks under an outcome's UPDATE is replaced and the
UPDATE run again (``written``).
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from celery.exceptions import WorkerLostError
from django.db import InterfaceError, OperationalError, connections, transaction

from critical_path import signals
from critical_path.conf import settings
from critical_path.core import context
from critical_path.exceptions import PermanentFailure
from critical_path.models import Job, JobQuerySet, error_line
from critical_path.observability import metrics
from critical_path.publishing import dispatcher
from critical_path.publishing.handoff import Handoff, handed_off_early

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 10_000
#: Tries of an outcome's UPDATE whose connection broke, each on a new connection (see ``written``).
OUTCOME_TRIES = 8
#: The pause after the first broken try; it doubles after each, up to ``OUTCOME_PAUSE_MAX`` (11 s in all).
OUTCOME_PAUSE = 0.1
OUTCOME_PAUSE_MAX = 5.0


class Outcome:
    """What one delivery, or one rescue, did with a job."""

    SKIPPED = "skipped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    LOST_LEASE = "lost lease"
    COALESCED = "coalesced"
    RATE_LIMITED = "rate limited"


def fail(job: Job, attempt: int, exc: BaseException) -> str:
    """Record attempt ``attempt`` of ``job``, which this worker holds, as failed: retried later, or dead-lettered.

    ``Outcome.FAILED`` or ``Outcome.DEAD``; ``Outcome.LOST_LEASE`` if the
    attempt no longer holds the job (its lease expired and the relay rescued
    it, or a replay moved it): nothing is recorded then.
    """
    outcome = _record(job, attempt, exc, row(job))
    if outcome is None:
        return lost_lease(job, attempt)
    return outcome


def rescue(job: Job) -> str:
    """Record the running attempt of ``job``, whose lease is over, as failed by a lost worker (the relay's case).

    ``Outcome.FAILED`` or ``Outcome.DEAD``; ``Outcome.SKIPPED`` if the row is
    no longer running past its lease at that attempt: its worker recorded an
    outcome after all, or another relay rescued it first.
    """
    lost = WorkerLostError(
        f"attempt {job.attempts} lost its worker (killed, out of memory or cut off): its lease expired at "
        f"{job.lease_expires_at:%Y-%m-%d %H:%M:%S%z}; rescued by the relay."
    )
    token = context.running(context.JobContext.of(job, job.attempts))  # its log lines name the job
    try:
        outcome = _record(job, job.attempts, lost, row(job).lease_expired())
    finally:
        context.reset(token)
    return Outcome.SKIPPED if outcome is None else outcome


def written(job: Job, update: Callable[[], int], landed: Sequence[str]) -> int:
    """Run ``update``, an outcome's compare-and-set UPDATE of ``job``'s row; how many rows it moved.

    If the connection breaks under it (a failover, a terminated backend, a
    pooler restart, SQLite's lock timeout), the UPDATE runs again on a new
    connection, up to ``OUTCOME_TRIES`` times with a pause that doubles from
    ``OUTCOME_PAUSE`` up to ``OUTCOME_PAUSE_MAX``. It is idempotent: it moves the
    row only while the job's claim (``job.claims``) holds it. A try may have
    committed before its connection broke: a later one then finds the row
    already moved, in one of the ``landed`` statuses under the same claim, and
    counts it as moved. Raises the last error once the tries are spent (the job
    then stays running until its lease expires), and at once inside a caller's
    transaction, which is not the worker's to end.
    """
    connection = connections[job.database]
    pause = OUTCOME_PAUSE
    for tries in range(1, OUTCOME_TRIES + 1):
        try:
            moved = update()
            if moved or tries == 1:
                return moved
            return int(row(job).filter(claims=job.claims, status__in=list(landed)).exists())
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or tries == OUTCOME_TRIES:
                raise
            logger.warning(
                "job outcome not written, trying again on a new connection id=%s effect=%s try=%d error=%s",
                job.pk, job.effect, tries, error_line(str(exc)) or type(exc).__name__,
            )  # fmt: skip
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, OUTCOME_PAUSE_MAX)
    raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover


def row(job: Job) -> JobQuerySet:
    """The job's own row, to move it; built only when needed (a filtered queryset costs ~0.2 ms of CPU)."""
    return Job.objects.using(job.database).filter(pk=job.pk)


def lost_lease(job: Job, attempt: int) -> str:
    """Log an outcome that was not recorded because attempt ``attempt`` no longer holds the job."""
    logger.warning(
        "job outcome not recorded: attempt %d no longer holds the job id=%s effect=%s", attempt, job.pk, job.effect
    )
    return Outcome.LOST_LEASE


def _record(job: Job, attempt: int, exc: BaseException, jobs: JobQuerySet) -> str | None:
    """Move ``jobs`` (the job's row, narrowed by the caller) to failed or dead; ``None`` if it had moved."""
    error = _describe(exc)
    entry: dict[str, Any] = {
        "attempt": attempt,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "error": error_line(error) or type(exc).__name__,
        "traceback": error,
        "exception": f"{type(exc).__module__}.{type(exc).__qualname__}",
    }
    if job.worker_id:  # a Django task's attempt: its result lists the worker of each attempt
        entry["worker_id"] = job.worker_id
    history = [entry, *job.error_history][: settings.ERROR_HISTORY_LIMIT]
    if isinstance(exc, PermanentFailure) or attempt >= job.max_attempts:
        if not written(job, lambda: jobs.dead_letter(job.claims, error, history), [Job.Status.DEAD]):
            return None
        job.status, job.last_error, job.error_history = Job.Status.DEAD, error, history
        logger.error(
            "job dead-lettered id=%s effect=%s attempt=%d error=%s", job.pk, job.effect, attempt, entry["error"]
        )
        metrics.count("dead_lettered", job.effect, job.queue)
        signals.job_dead_lettered.send(sender=Job, job=job, error=exc)
        return Outcome.DEAD
    wait = _backoff(attempt, settings.RETRY_BACKOFF, settings.RETRY_BACKOFF_MAX)
    if not written(job, lambda: jobs.fail(job.claims, wait, error, history), [Job.Status.FAILED, Job.Status.ENQUEUED]):
        return None
    job.status, job.last_error, job.error_history = Job.Status.FAILED, error, history
    logger.warning(
        "job failed id=%s effect=%s attempt=%d retry_in=%.1fs error=%s",
        job.pk, job.effect, attempt, wait.total_seconds(), entry["error"],
    )  # fmt: skip
    metrics.count("failed", job.effect, job.queue)
    if handed_off_early(wait):
        _hand_off_retry(job)
    signals.job_failed.send(sender=Job, job=job, error=exc)
    return Outcome.FAILED


def _hand_off_retry(job: Job) -> None:
    """Publish the retry now, due at its time (a timed hand-off), instead of at the relay's next pass.

    The due time is read back from the row (the database's clock set it): the
    hand-off marks the job enqueued only while it is still due at that time.
    """
    due = row(job).filter(status=Job.Status.FAILED).values_list("available_at", flat=True).first()
    if due is not None:
        handoff = Handoff(
            job.database, job.pk, job.effect, job.queue, job.priority, job.correlation_id, job.trace_context, due
        )
        # In a worker there is no transaction here and it is handed off at once; inside a caller's
        # transaction (run_pending_jobs in a test), only if that commits, as an emit's hand-off.
        transaction.on_commit(partial(dispatcher.submit, handoff), using=job.database, robust=True)


def _backoff(attempt: int, base: float, cap: float) -> timedelta:
    """Delay before the attempt after ``attempt`` (1-based): ``base·2^(attempt-1)``, capped, then jittered.

    "Equal jitter": half the delay is kept, the other half drawn at random, so
    a burst of failures does not retry in lockstep, and retries never come
    sooner than half the nominal delay.
    """
    nominal = min(cap, base * 2 ** min(attempt - 1, 62))
    return timedelta(seconds=nominal / 2 + random.uniform(0, nominal / 2))


def _describe(exc: BaseException) -> str:
    if exc.__traceback__ is None:  # never raised: the relay's account of a lost worker
        return f"{type(exc).__name__}: {exc}"
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > MAX_ERROR_LENGTH:
        text = "…" + text[-MAX_ERROR_LENGTH:]
    return text.replace("\x00", "\\x00")
