"""Running one job: claim it, run its side effect, record the outcome.

Claim and outcome are compare-and-set UPDATEs. The claim moves the job to
``running`` and counts the attempt and the claim (or, when a newer equal job has
not started yet, to ``coalesced``: that one runs instead); the outcome UPDATE only
applies if the job is still ``running`` under that same claim, so a worker whose
lease expired (and whose job was rescued, or replayed, and run again) cannot
overwrite the newer run's result. Whatever is raised between the claim and the
run (a side effect whose module fails to import, the rate limit's database)
fails the attempt with its own error, as the run's would.
The lease is the hard time limit plus ``LEASE_GRACE`` (see ``timeouts``): nobody
rescues a job while its worker may still be running it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import transaction

from critical_path import signals
from critical_path.core import context
from critical_path.core.crashpoints import crash_point
from critical_path.models import Job
from critical_path.observability import metrics, tracing
from critical_path.outbox import effects, versions
from critical_path.publishing import dispatcher
from critical_path.store import compiled
from critical_path.worker import outcomes, rate_limits, timeouts
from critical_path.worker.outcomes import Outcome

logger = logging.getLogger(__name__)


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
    try:
        if _rate_limited(job, attempt):
            return Outcome.RATE_LIMITED
    except Exception as exc:
        # Left running, the job would wait out its lease and be rescued as a lost worker, its error unrecorded.
        return outcomes.fail(job, attempt, exc)
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
        return False  # the run records the error (any other error is the attempt's, recorded by deliver)
    if rate is None:
        return False
    next_token = rate_limits.take(job.effect, rate, using=job.database)
    if next_token is None:
        return False
    until = rate_limits.comeback(next_token, job.created_at, rate, random.random())
    if outcomes.row(job).postpone(job.claims, attempt, until):
        logger.info("job postponed by its rate limit id=%s effect=%s until=%s", job.pk, job.effect, until.isoformat())
        metrics.count("rate_limited", job.effect, job.queue)
    return True


def _run(job: Job, attempt: int, soft_time_limit: float | None) -> str:
    if attempt == 1 and job.queue_wait is not None:
        metrics.observe("queue_wait", job.effect, job.queue, job.queue_wait.total_seconds())
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
        return outcomes.fail(job, attempt, timeouts.explain(exc, soft_time_limit, attempt))
    ran = time.perf_counter() - start
    metrics.observe("run", job.effect, job.queue, ran)
    if not effect.atomic:  # an atomic one marked its success in its own transaction
        crash_point("delivery.after_run")
        if returned is None:
            update: Callable[[], int] = partial(compiled.succeed, job.pk, job.claims, using=job.database)
        else:  # a Django task's return value
            update = partial(outcomes.row(job).succeed, job.claims, returned)
        succeeded = bool(outcomes.written(job, update, [Job.Status.SUCCEEDED]))
    if not succeeded:
        return outcomes.lost_lease(job, attempt)
    job.status = Job.Status.SUCCEEDED
    logger.info("job succeeded id=%s effect=%s attempt=%d", job.pk, job.effect, attempt)
    metrics.count("succeeded", job.effect, job.queue)
    if job.started_at:
        metrics.observe("end_to_end", job.effect, job.queue, (job.started_at - job.created_at).total_seconds() + ran)
    if job.ordering_key is not None:
        dispatcher.hand_off_next(job.database, [job.ordering_key])
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
        with transaction.atomic(using=job.database):
            effect.run(job, attempt, args, kwargs)
            if not compiled.succeed(job.pk, job.claims, using=job.database):
                raise _LeaseLost
            crash_point("delivery.after_run")
    except _LeaseLost:
        return False
    return True
