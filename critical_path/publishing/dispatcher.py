"""Publishing committed jobs to the broker, off the request thread.

Each process that emits gets one dispatcher: a bounded in-memory queue fed by
``on_commit`` callbacks and drained by a daemon thread, which publishes in
batches through one pooled producer and marks each batch ``enqueued`` with one
UPDATE. The request only ever does ``put_nowait``: when the queue is full or the
broker is down, ids are dropped and the relay publishes those rows later, so a
slow broker costs a request nothing. After a fork the child starts its own
dispatcher; the parent's queue stays the parent's.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.db import DatabaseError, connections
from django.db.models import F

from critical_path.conf import settings
from critical_path.core.crashpoints import crash_point
from critical_path.publishing.handoff import Handoff, next_in_line
from critical_path.publishing.publisher import Publisher

logger = logging.getLogger(__name__)


_STOP = object()
MILLISECOND = timedelta(milliseconds=1)


class Dispatcher:
    def __init__(self, maxsize: int, batch_size: int, linger: float) -> None:
        self.batch_size = batch_size
        self.linger = linger
        self.arrived_at = -float("inf")  # monotonic time the last job was taken off the queue, about when it came
        self.queue: queue.Queue[Handoff | object] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="critical_path.dispatcher", daemon=True)
        self.thread.start()

    def submit(self, handoff: Handoff) -> None:
        try:
            self.queue.put_nowait(handoff)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "dispatcher queue full, job left to the relay id=%s dropped=%d", handoff.job_id, self.dropped
                )

    def stop(self, timeout: float) -> bool:
        """Ask the thread to publish what it holds and stop; False if it did not within ``timeout``."""
        try:
            self.queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        publisher = Publisher()
        try:
            while True:
                try:
                    item = self.queue.get(timeout=60)
                except queue.Empty:
                    publisher.release()
                    connections.close_all()  # idle: give the connections back
                    continue
                batch: list[Handoff] = []
                stop = item is _STOP
                if not stop:
                    batch.append(item)  # type: ignore[arg-type]
                    stop = self._fill(batch)
                if batch:
                    self._publish(publisher, batch)
                if stop:
                    return
        finally:
            publisher.release()
            connections.close_all()

    def _fill(self, batch: list[Handoff]) -> bool:
        """Add what has come, and while busy what arrives within the linger, to ``batch``; True if asked to stop.

        Busy: the batch's first job came less than a linger after the job before
        it. Then commits come close together, and waiting for the next ones saves
        an UPDATE and a broker round trip per commit, CPU the requests of this
        process would lose. After a quiet spell a commit's jobs go out at once:
        the linger would only add to their latency. (Measured from arrivals, not
        from the last publish, which the linger itself delays.)
        """
        now = time.monotonic()
        deadline = now + self.linger if now - self.arrived_at < self.linger else now
        self.arrived_at = now
        while len(batch) < self.batch_size:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is _STOP:
                return True
            self.arrived_at = time.monotonic()
            batch.append(item)  # type: ignore[arg-type]
        return False

    def _publish(self, publisher: Publisher, batch: list[Handoff]) -> None:
        published: dict[str, list[int]] = defaultdict(list)
        timed: list[Handoff] = []
        crash_point("dispatch.before_publish")
        for handoff in publisher.publish(batch):  # none if the broker is down: the relay publishes them
            if handoff.eta is None:
                published[handoff.database].append(handoff.job_id)
            else:
                timed.append(handoff)
        from critical_path.store import compiled

        if published or timed:
            crash_point("dispatch.before_mark")
        for database, ids in published.items():
            try:
                compiled.hand_off(ids, using=database)
            except DatabaseError:
                # Published but not marked: the relay publishes them again and delivery drops the duplicate.
                logger.exception("could not mark %d published jobs enqueued on %s", len(ids), database)
                connections[database].close()
        for handoff in timed:
            try:
                mark_timed(handoff)
            except DatabaseError:
                logger.exception("could not mark job %s enqueued on %s", handoff.job_id, handoff.database)
                connections[handoff.database].close()


_dispatcher: Dispatcher | None = None
_lock = threading.Lock()
_hooks_installed = False

#: Runs a job in this process when ``CRITICAL_PATH_EAGER`` is on (tests): the worker's delivery, set by
#: ``apps.ready()``, so that publishing, below the worker, never imports it.
inline_runner: Callable[[int, str], object] | None = None


def get() -> Dispatcher:
    """This process's dispatcher, started on first use."""
    global _dispatcher, _hooks_installed
    dispatcher = _dispatcher
    if dispatcher is None:
        with _lock:
            dispatcher = _dispatcher
            if dispatcher is None:
                if not _hooks_installed:
                    os.register_at_fork(after_in_child=_forget)
                    atexit.register(shutdown)
                    _hooks_installed = True
                dispatcher = _dispatcher = Dispatcher(
                    settings.DISPATCHER_QUEUE_SIZE, settings.DISPATCHER_BATCH_SIZE, settings.DISPATCHER_LINGER
                )
    return dispatcher


def submit(handoff: Handoff) -> None:
    """Queue a committed job for publishing; never blocks, never raises into the caller.

    With ``CRITICAL_PATH_EAGER`` (tests), run the job here and now instead.
    """
    if settings.EAGER and inline_runner is not None:  # inline_runner is set whenever the app is installed
        if handoff.eta is None:  # a job due later waits for the relay, as it would without the timed hand-off
            inline_runner(handoff.job_id, handoff.database)
        return
    get().submit(handoff)


def mark_timed(handoff: Handoff) -> int:
    """Record that a pending or failed job's message carries its due time (``eta``): ``enqueued_at = available_at``.

    The job keeps its status (still pending, or failed awaiting its retry, in
    the admin's lists) and the relay leaves it to its message unless it is
    still unclaimed ``RELAY_GRACE`` after its due time. The mark holds only
    while the job is due at that time: failed again or postponed, it has
    another due time, so ``enqueued_at`` no longer equals it and the relay
    publishes it when due.
    """
    from critical_path.models import Job

    assert handoff.eta is not None
    # Within a millisecond, not equal: SQLite keeps the database clock's times to the millisecond, as text.
    due = (handoff.eta - MILLISECOND, handoff.eta + MILLISECOND)
    return (
        Job.objects.using(handoff.database)
        .filter(pk=handoff.job_id, status__in=[Job.Status.PENDING, Job.Status.FAILED], available_at__range=due)
        .update(enqueued_at=F("available_at"))
    )


def hand_off_next(database: str, keys: Iterable[str]) -> None:
    """Submit the next job of each ordering key whose line's head just finished (``handoff.next_in_line``)."""
    for handoff in next_in_line(database, keys):
        submit(handoff)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop this process's dispatcher (at exit, bounded by ``DISPATCHER_EXIT_TIMEOUT``)."""
    global _dispatcher
    with _lock:
        dispatcher, _dispatcher = _dispatcher, None
    if dispatcher is None:
        return True
    return dispatcher.stop(settings.DISPATCHER_EXIT_TIMEOUT if timeout is None else timeout)


def _forget() -> None:
    # In a forked child: the parent's thread does not exist here and its lock may be held.
    global _dispatcher, _lock
    _dispatcher = None
    _lock = threading.Lock()
