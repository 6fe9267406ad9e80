"""One relay pass: publish jobs the dispatcher did not hand off, and retries whose time has come.

The relay is what makes a lost hand-off harmless: a web process that died
after commit, a full dispatcher queue, a broker that was down. It publishes
``pending`` jobs older than ``RELAY_GRACE`` (younger ones are the dispatcher's,
and are not doubled), delayed jobs once due, and ``failed`` jobs whose backoff
has passed. On PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED``, so
relays can run side by side without publishing a row twice in one pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connections, transaction
from django.db.models import F, Q

from critical_path.conf import settings
from critical_path.crashpoints import crash_point
from critical_path.models import Job, JobQuerySet, now_plus
from critical_path.publisher import Handoff, Publisher

logger = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What one pass did on one database."""

    database: str
    published: int = 0
    broker_down: bool = False
    published_ids: list[int] = field(default_factory=list, repr=False)


def due_jobs(database: str) -> JobQuerySet:
    """Jobs the relay publishes now: retries due, delayed jobs due, pending past the grace period."""
    grace = timedelta(seconds=settings.RELAY_GRACE)
    return (
        Job.objects.using(database)
        .due()
        .filter(Q(status=Job.Status.FAILED) | Q(available_at__gt=F("created_at")) | Q(created_at__lte=now_plus(-grace)))
        .order_by("available_at")
    )


def run_once(database: str, *, publisher: Publisher | None = None, batch_size: int | None = None) -> PassResult:
    """Publish every job due on ``database``, in batches; stops early if the broker is down."""
    publisher = publisher or Publisher()
    batch_size = batch_size or settings.RELAY_BATCH_SIZE
    result = PassResult(database)
    skip_locked = connections[database].features.has_select_for_update_skip_locked
    try:
        while True:
            with transaction.atomic(using=database):
                jobs = due_jobs(database)
                if skip_locked:
                    jobs = jobs.select_for_update(skip_locked=True)
                rows = [
                    Handoff(database, *row)
                    for row in jobs.values_list("pk", "effect", "queue", "priority")[:batch_size]
                ]
                published = [handoff.job_id for handoff in publisher.publish(rows)]
                if published:
                    crash_point("relay.before_mark")
                result.broker_down = len(published) < len(rows)
                handed_off = Job.objects.using(database).filter(pk__in=published)
                handed_off.hand_off()
                handed_off.retry()
            result.published += len(published)
            result.published_ids += published
            if result.broker_down or len(rows) < batch_size:
                return result
    finally:
        publisher.release()


def run(databases: list[str]) -> list[PassResult]:
    """One pass over each database."""
    publisher = Publisher()
    results = [run_once(database, publisher=publisher) for database in databases]
    for result in results:
        if result.published or result.broker_down:
            logger.info(
                "relay pass database=%s published=%d broker_down=%s",
                result.database, result.published, result.broker_down,
            )  # fmt: skip
    return results
