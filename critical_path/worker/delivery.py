"""Running one job: claim it, run its side effect, record the outcome.

Claim and outcome are compare-and-set UPDATEs. The claim moves the job to
``running`` and counts the attempt (or, when a newer equal job has not started
yet, to ``coalesced``: that one runs instead); the outcome UPDATE only applies if the job
is still ``running`` at that same attempt, so a worker whose lease expired (and
whose job was rescued and run again) cannot overwrite the newer run's result.
The lease is the hard time limit plus ``LEASE_GRACE`` (see ``timeouts``): nobody
rescues a job while its worker may still be running it.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from typing import Any

from django.db import transaction

from critical_path import signals
from critical_path.conf import settings
from critical_path.core import context
from critical_path.core.crashpoints import crash_point
from critical_path.exceptions import PermanentFailure
from critical_path.models import Job, JobQuerySet
from critical_path.observability import metrics, tracing
from critical_path.outbox import effects, versions
from critical_path.publishing import dispatcher
from critical_path.store import compiled
from critical_path.worker import backoff, rate_limits, timeouts

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 10_000


class Outcome:
    SKIPPED = "skipped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    LOST_LEASE = "lost lease"
    COALESCED = "coalesced"
    RATE_LIMITED = "rate limited"


def deliver(
    job_id: int, database: str, *, time_limit: float | None = None, soft_time_limit: float | None = None
) -> str:
    """Run job ``job_id`` of ``database`` if it can be claimed now; return what happened.

    ``time_limit`` and ``soft_time_limit`` are the limits the worker enforces on
    this attempt (its message's): the lease follows from the hard one.
    """
    claimed_at = time.time_ns()
    job = compiled.claim(job_id, timeouts.lease(time_limit), using=database)
    if job is None:
        # Duplicate message, a job another worker holds, or one already finished or not yet due; or a job
        # whose ordering key's line is not at it yet, which waits as pending to be handed off in its turn.
        if Job.objects.using(database).filter(pk=job_id).wait():
            logger.info("job waits for its turn, message dropped id=%s database=%s", job_id, database)
        else:
            logger.info("job not claimable, message dropped id=%s database=%s", job_id, database)
        return Outcome.SKIPPED
    crash_point("delivery.after_claim")
    if job.status == Job.Status.COALESCED:
        logger.info("job coalesced into a newer one id=%s effect=%s", job.pk, job.effect)
        metrics.count("coalesced", job.effect, job.queue)
        return Outcome.COALESCED
    attempt = job.attempts
    if _rate_limited(job, attempt):
        return Outcome.RATE_LIMITED
    token = context.running(context.JobContext.of(job, attempt))
    try:  # the whole run, outcome included, is in the job's context (and span): its log lines carry it
        with tracing.processing(job, attempt, claimed_at):
            logger.info("job claimed id=%s effect=%s attempt=%d", job.pk, job.effect, attempt)
            return _run(job, attempt, soft_time_limit)
    finally:
        context.reset(token)


def _rate_limited(job: Job, attempt: int) -> bool:
    """Postpone the claimed job, its attempt given back, if its side effect's rate limit has no token left.

    It is due again once a token may be free, plus a random share of a window
    that grows with what the job has waited (``rate_limits.comeback``); the
    relay publishes it then.
    """
    try:
        rate = effects.resolve(job.effect).rate
    except LookupError:
        return False  # the run records the error
    if rate is None:
        return False
    next_token = rate_limits.take(job.effect, rate, using=_db(job))
    if next_token is None:
        return False
    until = rate_limits.comeback(next_token, job.created_at, rate, random.random())
    if _this(job).postpone(attempt, until):
        logger.info("job postponed by its rate limit id=%s effect=%s until=%s", job.pk, job.effect, until.isoformat())
        metrics.count("rate_limited", job.effect, job.queue)
    return True


def _run(job: Job, attempt: int, soft_time_limit: float | None) -> str:
    if attempt == 1 and job.started_at:
        handed_off = max(job.enqueued_at or job.available_at, job.available_at)
        metrics.observe("queue_wait", job.effect, job.queue, (job.started_at - handed_off).total_seconds())
    start = time.perf_counter()
    try:
        effect = effects.resolve(job.effect)
        args, kwargs = versions.upgraded(effect, job)
        with tracing.running(job, attempt):
            if effect.atomic:
                succeeded = _run_atomically(effect, job, args, kwargs, attempt)
            else:
                returned = effect.run(job, attempt, args, kwargs)
    except Exception as exc:
        metrics.observe("run", job.effect, job.queue, time.perf_counter() - start)
        return record_failure(job, attempt, timeouts.explain(exc, soft_time_limit, attempt))
    ran = time.perf_counter() - start
    metrics.observe("run", job.effect, job.queue, ran)
    if not effect.atomic:  # an atomic one marked its success in its own transaction
        crash_point("delivery.after_run")
        if returned is None:
            succeeded = bool(compiled.succeed(job.pk, attempt, using=_db(job)))
        else:  # a Django task's return value
            succeeded = bool(_this(job).succeed(attempt, returned))
    if not succeeded:
        return _lost_lease(job, attempt)
    job.status = Job.Status.SUCCEEDED
    logger.info("job succeeded id=%s effect=%s attempt=%d", job.pk, job.effect, attempt)
    metrics.count("succeeded", job.effect, job.queue)
    if job.started_at:
        metrics.observe("end_to_end", job.effect, job.queue, (job.started_at - job.created_at).total_seconds() + ran)
    if job.ordering_key is not None:
        dispatcher.hand_off_next(_db(job), [job.ordering_key])
    signals.job_succeeded.send(sender=Job, job=job)
    return Outcome.SUCCEEDED


class _LeaseLost(Exception):
    """Raised inside an atomic side effect's transaction to roll it back: a newer attempt holds the job."""


def _run_atomically(
    effect: effects.SideEffect[Any, Any],
    job: Job,
    args: list[Any],
    kwargs: dict[str, Any],
    attempt: int,
) -> bool:
    """Run the function and mark the job succeeded in one transaction on the job's database.

    Its writes there and the success commit together or not at all: a worker
    dying anywhere before the commit leaves neither, and the job's next attempt
    starts clean. Returns False, with the function's writes rolled back, if the
    attempt lost its lease meanwhile; an exception rolls them back too.
    """
    try:
        with transaction.atomic(using=_db(job)):
            effect.run(job, attempt, args, kwargs)
            if not compiled.succeed(job.pk, attempt, using=_db(job)):
                raise _LeaseLost
            crash_point("delivery.after_run")
    except _LeaseLost:
        return False
    return True


def record_failure(job: Job, attempt: int, exc: BaseException, *, rescue: bool = False) -> str:
    """Record attempt ``attempt`` of ``job`` as failed: retry later, or dead-letter it.

    ``rescue`` is the relay's case: the worker is gone and its lease is over;
    the row only moves if its lease has expired, and finding it moved already
    is no news.
    """
    error = _describe(exc)
    entry: dict[str, Any] = {
        "attempt": attempt,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "error": error.splitlines()[-1] if error else type(exc).__name__,
        "traceback": error,
        "exception": f"{type(exc).__module__}.{type(exc).__qualname__}",
    }
    if job.worker_id:  # a Django task's attempt: its result lists the worker of each attempt
        entry["worker_id"] = job.worker_id
    history = [entry, *job.error_history][: settings.ERROR_HISTORY_LIMIT]
    jobs = _this(job)
    if rescue:
        jobs = jobs.lease_expired()
    if isinstance(exc, PermanentFailure) or attempt >= job.max_attempts:
        if not jobs.dead_letter(attempt, error, history):
            return Outcome.SKIPPED if rescue else _lost_lease(job, attempt)
        job.status, job.last_error, job.error_history = Job.Status.DEAD, error, history
        logger.error(
            "job dead-lettered id=%s effect=%s attempt=%d error=%s", job.pk, job.effect, attempt, entry["error"]
        )
        metrics.count("dead_lettered", job.effect, job.queue)
        signals.job_dead_lettered.send(sender=Job, job=job, error=exc)
        return Outcome.DEAD
    wait = backoff.delay(attempt, settings.RETRY_BACKOFF, settings.RETRY_BACKOFF_MAX)
    if not jobs.fail(attempt, wait, error, history):
        return Outcome.SKIPPED if rescue else _lost_lease(job, attempt)
    job.status, job.last_error, job.error_history = Job.Status.FAILED, error, history
    logger.warning(
        "job failed id=%s effect=%s attempt=%d retry_in=%.1fs error=%s",
        job.pk, job.effect, attempt, wait.total_seconds(), entry["error"],
    )  # fmt: skip
    metrics.count("failed", job.effect, job.queue)
    signals.job_failed.send(sender=Job, job=job, error=exc)
    return Outcome.FAILED


def _this(job: Job) -> JobQuerySet:
    """The job's own row, to move it; built only when needed (a filtered queryset costs ~0.2 ms of CPU)."""
    return Job.objects.using(_db(job)).filter(pk=job.pk)


def _db(job: Job) -> str:
    """The database the job was read from (the claim read it: it has one)."""
    if job._state.db is None:
        raise RuntimeError(f"job {job.pk} was not read from a database")
    return job._state.db


def _lost_lease(job: Job, attempt: int) -> str:
    logger.warning(
        "job outcome not recorded: attempt %d no longer holds the job id=%s effect=%s", attempt, job.pk, job.effect
    )
    return Outcome.LOST_LEASE


def _describe(exc: BaseException) -> str:
    if exc.__traceback__ is None:  # never raised: the relay's account of a lost worker
        return f"{type(exc).__name__}: {exc}"
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > MAX_ERROR_LENGTH:
        text = "…" + text[-MAX_ERROR_LENGTH:]
    return text.replace("\x00", "\\x00")
