"""Celery tasks: ``critical_path.deliver`` runs every side effect; ``critical_path.relay`` is one relay pass.

``acks_late`` with ``reject_on_worker_lost``: a worker killed mid-task gives the
message back instead of acking it. A message that is delivered twice, or that
arrives for a job another worker holds or has finished, is dropped by the
claim in ``delivery.deliver`` before the function runs.

Each delivery treats the database connections as Django treats them around a
request (``close_old_connections``): ``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS``
hold in workers too, and a broken or expired connection is replaced here. Celery's
Django fixup, which would close every connection around every task, skips this
one (``worker.connections``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import connections

from critical_path.core import correlation
from critical_path.exceptions import RelayBusy
from critical_path.models import job_databases
from critical_path.relay import passes
from critical_path.worker import delivery

logger = logging.getLogger(__name__)


@shared_task(name="critical_path.deliver", bind=True, acks_late=True, reject_on_worker_lost=True)
def deliver(self: Any, job_id: int, database: str) -> str:
    hard_limit, soft_limit = self.request.timelimit or (None, None)
    # The job row holds the id too; the header also puts it on the lines logged before the claim.
    correlation_id = getattr(self.request, correlation.MESSAGE_HEADER, None) or None
    eager = bool(getattr(self.request, "is_eager", False))
    if not eager:
        _recycle_connections()
    try:
        with correlation.correlated(correlation_id):
            return delivery.deliver(job_id, database, time_limit=hard_limit, soft_time_limit=soft_limit)
    finally:
        if not eager:
            _recycle_connections()


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
