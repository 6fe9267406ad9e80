"""The relay: what makes every committed job run, whatever died in between.

One pass over a database:

1. rescues ``running`` jobs whose lease is over (the worker was killed or lost):
   back to ``failed`` with a ``WorkerLostError``, or ``dead`` at max attempts;
2. publishes due jobs: ``pending`` ones older than ``RELAY_GRACE`` (younger
   ones are the dispatcher's, and are not doubled), delayed jobs once due, and
   ``failed`` jobs whose backoff has passed;
3. publishes again ``enqueued`` jobs whose message looks lost (enqueued longer
   than ``REPUBLISH_AFTER``, doubling per republish), counting each time.

Rows are read in batches with ``FOR UPDATE SKIP LOCKED`` where the database has
it, so relays on several hosts run side by side without publishing a job twice
in one pass; SQLite runs one relay at a time. Publishing costs a job no
attempt; a broker outage stops the pass and is logged once. All times are the
database's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import DatabaseError, connections
from django.db.models import DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import Now

from critical_path.conf import settings
from critical_path.core.crashpoints import crash_point
from critical_path.models import Job, JobQuerySet, now_plus
from critical_path.observability import metrics
from critical_path.publishing.handoff import HANDOFF_COLUMNS, Handoff
from critical_path.publishing.publisher import Publisher
from critical_path.relay import heartbeat
from critical_path.relay.locking import exclusive, limited
from critical_path.worker import outcomes

logger = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What one pass did on one database."""

    database: str
    published: int = 0
    republished: int = 0
    rescued: int = 0
    dead: int = 0
    broker_down: bool = False
    error: str = ""
    published_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def handled(self) -> int:
        return self.published + self.republished + self.rescued + self.dead

    def __str__(self) -> str:
        text = (
            f"{self.database}: {self.published} published, {self.republished} republished, "
            f"{self.rescued} rescued, {self.dead} dead-lettered."
        )
        if self.broker_down:
            text += " Broker unreachable; the rest waits for the next pass."
        if self.error:
            text += f" Database error: {self.error}"
        return text


def due_jobs(database: str) -> JobQuerySet:
    """Jobs the relay publishes now: retries due, delayed jobs due, pending past the grace period.

    Jobs waiting for their turn in an ordering key's line are left out: the
    job before them hands them off when it ends.
    """
    grace = now_plus(-timedelta(seconds=settings.RELAY_GRACE))
    return (
        Job.objects.using(database)
        .due()
        .filter(Q(status=Job.Status.FAILED) | Q(available_at__gt=F("created_at")) | Q(created_at__lte=grace))
        # A job whose message carries its due time (a timed hand-off) is left to it for the grace period too.
        .filter(~Q(enqueued_at=F("available_at")) | Q(available_at__lte=grace))
        .unblocked()
        .order_by("available_at")
    )


def soon_jobs(database: str) -> JobQuerySet:
    """Pending and failed jobs due before the relay's next pass: published now, with their due time (``eta``).

    Within ``RELAY_INTERVAL`` and a second of now (never beyond
    ``TIMED_HANDOFF_WITHIN``), so that a job due later than the dispatcher's or
    a worker's timed hand-off reaches, or whose hand-off was lost, still starts
    when it is due, whenever the relay's passes fall.
    """
    within = timedelta(seconds=min(settings.RELAY_INTERVAL + 1.0, settings.TIMED_HANDOFF_WITHIN))
    return (
        Job.objects.using(database)
        .filter(status__in=[Job.Status.PENDING, Job.Status.FAILED], available_at__gt=Now())
        .filter(available_at__lte=now_plus(within))
        .exclude(enqueued_at=F("available_at"))  # already handed off with its due time
        .unblocked()
        .order_by("available_at")
    )


def _mark_timed(jobs: JobQuerySet) -> int:
    """The timed hand-off's mark (``dispatcher.mark_timed``), on rows this pass holds locked."""
    return jobs.filter(status__in=[Job.Status.PENDING, Job.Status.FAILED]).update(enqueued_at=F("available_at"))


def next_due_in(database: str) -> float | None:
    """Seconds until the next pending or failed job of ``database`` falls due, by the database's clock.

    One probe of the partial index on the due statuses; ``None`` if none waits.
    """
    waits = (
        Job.objects.using(database)
        .filter(status__in=[Job.Status.PENDING, Job.Status.FAILED], available_at__gt=Now())
        .exclude(enqueued_at=F("available_at"))  # its message carries its due time
        .order_by("available_at")
        .annotate(wait=ExpressionWrapper(F("available_at") - Now(), output_field=DurationField()))
        .values_list("wait", flat=True)[:1]
    )
    for wait in waits:
        return max(0.0, float(wait.total_seconds()))
    return None


def stuck_jobs(database: str) -> JobQuerySet:
    """Enqueued jobs whose message looks lost, oldest first."""
    after = timedelta(seconds=settings.REPUBLISH_AFTER)
    cap = max(after, timedelta(seconds=settings.REPUBLISH_AFTER_MAX))
    return Job.objects.using(database).stuck(after, cap).order_by("enqueued_at")


def run_once(
    database: str,
    *,
    publisher: Publisher | None = None,
    batch_size: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PassResult:
    """One pass over ``database``; raises ``RelayBusy`` if another relay holds a SQLite database."""
    own_publisher = publisher is None
    publisher = publisher or Publisher()
    batch_size = batch_size or settings.RELAY_BATCH_SIZE
    should_stop = should_stop or (lambda: False)
    result = PassResult(database)
    try:
        with exclusive(database):
            connections[database].close_if_unusable_or_obsolete()
            _rescue(database, batch_size, result)
            published = _publish(database, due_jobs(database), _mark_due, publisher, batch_size, should_stop, result)
            if not result.broker_down and settings.TIMED_HANDOFF_WITHIN > 0:
                published += _publish(
                    database, soon_jobs(database), _mark_timed, publisher, batch_size, should_stop, result, timed=True
                )
            result.published, result.published_ids = len(published), published
            if not result.broker_down:
                republished = _publish(
                    database, stuck_jobs(database), JobQuerySet.republish, publisher, batch_size, should_stop, result
                )
                result.republished = len(republished)
    except DatabaseError as exc:
        result.error = f"{type(exc).__name__}: {exc}".strip()
        connections[database].close()  # reconnect on the next pass
    finally:
        if own_publisher:
            publisher.release()
    heartbeat.record(
        database,
        published=result.published,
        republished=result.republished,
        rescued=result.rescued + result.dead,
        trouble=result.error or ("broker unreachable" if result.broker_down else ""),
    )
    if not result.error:
        try:
            metrics.update_outbox_gauges(database)
        except DatabaseError:
            logger.debug("could not update the outbox gauges of %s", database, exc_info=True)
            connections[database].close()
    return result


def _rescue(database: str, batch_size: int, result: PassResult) -> None:
    """Running jobs past their lease go back to failed (or dead), one compare-and-set UPDATE each."""
    while True:
        with limited(database):
            jobs = list(Job.objects.using(database).lease_expired().order_by("lease_expires_at")[:batch_size])
        for job in jobs:
            outcome = outcomes.rescue(job)
            if outcome == outcomes.Outcome.FAILED:
                result.rescued += 1
            elif outcome == outcomes.Outcome.DEAD:
                result.dead += 1
        if len(jobs) < batch_size:
            return


def _mark_due(jobs: JobQuerySet) -> int:
    return jobs.hand_off() + jobs.retry()


def _publish(
    database: str,
    jobs: JobQuerySet,
    mark: Callable[[JobQuerySet], int],
    publisher: Publisher,
    batch_size: int,
    should_stop: Callable[[], bool],
    result: PassResult,
    *,
    timed: bool = False,
) -> list[int]:
    """Publish ``jobs`` in batches, marking each batch in the transaction that holds its rows.

    ``timed``: each message carries its job's due time (Celery's ``eta``).
    """
    columns = (*HANDOFF_COLUMNS, "available_at") if timed else HANDOFF_COLUMNS
    skip_locked = connections[database].features.has_select_for_update_skip_locked
    done: list[int] = []
    while not should_stop():
        with limited(database):
            batch = jobs.select_for_update(skip_locked=True) if skip_locked else jobs
            rows = [Handoff(database, *row) for row in batch.values_list(*columns)[:batch_size]]
            published = [handoff.job_id for handoff in publisher.publish(rows)]
            if published:
                crash_point("relay.before_mark")
                mark(Job.objects.using(database).filter(pk__in=published))
        done += published
        if len(published) < len(rows):
            result.broker_down = True
        if result.broker_down or len(rows) < batch_size:
            break
    return done


class Relay:
    """Passes over several databases through one publisher, so an outage is logged once, not per pass."""

    #: Longest wait between passes while the broker or a database is down.
    MAX_BACKOFF = 60.0
    #: Shortest wait between two passes, however soon the next job falls due.
    MIN_WAIT = 0.02

    def __init__(self, databases: Sequence[str], *, batch_size: int | None = None) -> None:
        self.databases = list(databases)
        self.batch_size = batch_size
        self.publisher = Publisher()
        self._failing: set[str] = set()

    def run_pass(self, should_stop: Callable[[], bool] | None = None) -> list[PassResult]:
        """One pass over each database (``RelayBusy`` if another relay holds a SQLite one)."""
        results = []
        try:
            for database in self.databases:
                if should_stop and should_stop():
                    break
                result = run_once(
                    database, publisher=self.publisher, batch_size=self.batch_size, should_stop=should_stop
                )
                self._log(result)
                results.append(result)
        finally:
            self.publisher.release()
        return results

    def serve(self, interval: float, stop: threading.Event) -> Iterator[list[PassResult]]:
        """Pass after pass until ``stop`` is set, yielding each pass's results.

        A pass in progress finishes its batch first. While the broker or a
        database is down the wait doubles, up to ``MAX_BACKOFF``. Otherwise the
        relay wakes early when a job falls due before ``interval`` is over (a
        retry, a delayed job), so that it is published when it is due.
        """
        failures = 0
        with contextlib.ExitStack() as held:
            for database in self.databases:
                held.enter_context(exclusive(database))
            while not stop.is_set():
                results = self.run_pass(stop.is_set)
                yield results
                failures = failures + 1 if any(result.broker_down or result.error for result in results) else 0
                wait = min(interval * 2 ** min(failures, 10), max(interval, self.MAX_BACKOFF))
                if not failures:
                    wait = self._until_next_due(wait)
                stop.wait(wait)

    def _until_next_due(self, wait: float) -> float:
        """``wait``, or less if a job of one of the databases falls due sooner (then just after it is due)."""
        for database in self.databases:
            try:
                due_in = next_due_in(database)
            except DatabaseError:  # the next pass reports it
                connections[database].close()
                continue
            if due_in is not None:
                wait = min(wait, max(self.MIN_WAIT, due_in + 0.002))  # 2 ms: due by the database's clock
        return wait

    def _log(self, result: PassResult) -> None:
        if result.error:
            if result.database not in self._failing:
                logger.error("relay pass failed on database %s: %s", result.database, result.error)
                self._failing.add(result.database)
            return
        if result.database in self._failing:
            logger.info("relay reaches database %s again", result.database)
            self._failing.discard(result.database)
        if result.handled:
            logger.info(
                "relay pass database=%s published=%d republished=%d rescued=%d dead=%d",
                result.database, result.published, result.republished, result.rescued, result.dead,
            )  # fmt: skip
