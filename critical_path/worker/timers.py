"""Keep a prefork worker's main process flat: drop the time-limit timers of tasks that have finished.

Celery's prefork pool schedules a hard (or soft) time-limit timer in the worker's
main process for every task that has a time limit, and every critical_path job
has one: its lease follows from it. When the task finishes the timer is
cancelled, but kombu's timer keeps a cancelled entry in its heap until the time
it would have fired. At a steady rate the heap holds rate times time limit entries
(150,000 at 500 jobs/s with the default 300 s limit), about half a kilobyte each, so the
main process grew by tens of megabytes before levelling off. Every
``COMPACT_EVERY`` seconds the cancelled entries are removed from the heap.
"""

from __future__ import annotations

import heapq
from typing import Any

#: Seconds between two compactions of the worker's timer heap.
COMPACT_EVERY = 10.0


def compact_regularly(sender: Any = None, **kwargs: Any) -> None:
    """On ``worker_ready``: compact the event loop's timer heap every ``COMPACT_EVERY`` seconds.

    A worker without an event loop (the solo and threads pools) sets no such timers.
    """
    hub = getattr(getattr(sender, "controller", None), "hub", None)
    queue = getattr(getattr(hub, "timer", None), "_queue", None)  # kombu's Timer keeps its heap there
    if hub is None or not isinstance(queue, list):
        return
    hub.call_repeatedly(COMPACT_EVERY, compact, queue)


def compact(queue: list[Any]) -> int:
    """Remove the cancelled entries of a kombu timer heap in place; how many were removed.

    The heap's entries are ``(eta, priority, entry)``; the loop that reads it
    holds the same list, so it is changed in place and stays a heap.
    """
    live = [event for event in queue if not event[2].canceled]
    removed = len(queue) - len(live)
    if removed:
        queue[:] = live
        heapq.heapify(queue)
    return removed
