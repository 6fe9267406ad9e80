"""Celery tasks: ``critical_path.deliver`` runs every side effect; ``critical_path.relay`` is one relay pass.

``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-task gives the
message back instead of acking it. A message that is delivered twice, or that
arrives for a job another worker holds or has finished, is dropped by the
claim in ``delivery.deliver`` before the function runs.

A delivery whose attempt failed raises once its outcome is recorded
(``AttemptFailed``, or ``DeadLettered``, from the function's error), so that
Celery's own tools see the failure: the task's state is FAILURE, ``task_failure``
is sent, Flower shows it. Celery retries nothing of it (the task asks for no
retry, and Celery acknowledges or drops a failed task's message; it never
requeues it). ``AttemptFailed`` is in the task's ``throws``, errors Celery
logs at INFO without a traceback and Sentry's Celery integration does not
report: the job is retried by critical_path. A dead letter is reported.

Each delivery treats the database connections as Django treats them around a
request (``close_old_connections``): ``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS``
hold in workers too, and a broken or expired connection is replaced here. Celery's
Django fixup, which would close every connection around every task, skips this
one (``worker.connections``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import shared_task
from django.db import connections

from critical_path.core import correlation
from critical_path.exceptions import AttemptFailed, DeadLettered, DeliveryFailed, RelayBusy
from critical_path.models import Job, job_databases
from critical_path.relay import passes
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome

logger = logging.getLogger(__name__)

#: The failure this thread's delivery recorded: (job, error), from the job_failed / job_dead_lettered signals.
_failure = threading.local()


def remember_failure(sender: Any, job: Job, error: BaseException, **kwargs: Any) -> None:
    """Receiver of ``job_failed`` and ``job_dead_lettered`` (connected in ``apps``): the error the task raises from."""
    _failure.last = (job, error)


@shared_task(
    name="critical_path.deliver",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(AttemptFailed,),
)
def deliver(self: Any, job_id: int, database: str) -> str:
    hard_limit, soft_limit = self.request.timelimit or (None, None)
    # The job row holds the id too; the header also puts it on the lines logged before the claim.
    correlation_id = getattr(self.request, correlation.MESSAGE_HEADER, None) or None
    eager = bool(getattr(self.request, "is_eager", False))
    if not eager:
        _recycle_connections()
    _failure.last = None
    try:
        with correlation.correlated(correlation_id):
            outcome = delivery.deliver(job_id, database, time_limit=hard_limit, soft_time_limit=soft_limit)
    finally:
        if not eager:
            _recycle_connections()
    if outcome in (Outcome.FAILED, Outcome.DEAD):
        raise _failed(outcome, job_id)
    return outcome


def _failed(outcome: str, job_id: int) -> DeliveryFailed:
    """The exception the task raises for a recorded failure, its cause the function's error."""
    job, error = _failure.__dict__.pop("last", None) or (None, None)
    if job is None or job.pk != job_id:  # not recorded through the signals (a receiver raised before ours)
        return (DeadLettered if outcome == Outcome.DEAD else AttemptFailed)(f"job {job_id} {outcome}")
    if outcome == Outcome.DEAD:
        failure: DeliveryFailed = DeadLettered(
            f"job {job.pk} {job.effect} dead-lettered after attempt {job.attempts} of {job.max_attempts}: "
            f"{job.error_line}"
        )
    else:
        failure = AttemptFailed(
            f"job {job.pk} {job.effect} attempt {job.attempts} of {job.max_attempts} failed, to be retried: "
            f"{job.error_line}"
        )
    failure.__cause__ = error
    return failure


def _recycle_connections() -> None:
    """Close connections that are broken or older than ``CONN_MAX_AGE``, as Django does around each request."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:  # a caller's transaction (a test's) is not ours to end
            connection.close_if_unusable_or_obsolete()


@shared_task(name="critical_path.relay", ignore_result=True)
def relay(databases: list[str] | None = None) -> None:
    """One relay pass, run by a worker on django-celery-beat's schedule (see ``install_relay_schedule``)."""
    try:
        passes.Relay(databases or job_databases()).run_pass()
    except RelayBusy as exc:
        logger.info("relay pass skipped: %s", exc)
