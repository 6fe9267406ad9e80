"""What handing a committed job to the broker needs, and which job of an ordering key goes next.

A ``Handoff`` carries what publishing a job needs, so a job committed in this
process is published without reading it back; the relay and replays read the
same ``HANDOFF_COLUMNS`` from the table.

Ordering keys: jobs that share a key run one at a time, in the order of their
ids. The rule lives in the claim (``JobQuerySet.unblocked``), so the next job
of a key is handed off by whoever ends the line's current head: the worker
whose job succeeded, the operator who discarded one
(``dispatcher.hand_off_next``). If that hand-off is lost (the process died
after its commit), the relay publishes the job once its turn has come, after
its grace period.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now

from critical_path.conf import settings
from critical_path.models import Job


class Handoff(NamedTuple):
    """What publishing a job needs, so a committed job is published without reading it back."""

    database: str
    job_id: int
    effect: str
    queue: str
    priority: int
    correlation_id: str = ""
    trace_context: str = ""
    #: When the job is due, for a job handed off before then (a timed hand-off): the message carries it as
    #: Celery's ``eta``, and the job is marked enqueued only while it is still due at that same time.
    eta: datetime | None = None


def handed_off_early(wait: timedelta) -> bool:
    """Whether a job due ``wait`` from now is handed off at once, with its due time (a timed hand-off).

    Within ``TIMED_HANDOFF_WITHIN`` the broker holds it for the worker; a job due
    later is published by the relay, which wakes for the earliest one it knows.
    """
    return wait.total_seconds() <= settings.TIMED_HANDOFF_WITHIN


#: The job's columns that make its ``Handoff``, after the database alias, in the fields' order.
HANDOFF_COLUMNS = ("pk", "effect", "queue", "priority", "correlation_id", "trace_context")


def next_in_line(database: str, keys: Iterable[str]) -> list[Handoff]:
    """The next job of each key, where it heads its key's line and is due: call after the head finished.

    The line is the key's pending, enqueued, running, failed and dead jobs by
    id: one probe of the ordering index, with no subquery for Django to compile.
    """
    line = Job.objects.using(database).filter(status__in=Job.ORDERED_STATUSES).order_by("pk")
    due = ExpressionWrapper(Q(available_at__lte=Now()), output_field=BooleanField())
    handoffs = []
    for key in set(keys):
        head = line.filter(ordering_key=key).annotate(due=due)
        for *row, status, is_due in head.values_list(*HANDOFF_COLUMNS, "status", "due")[:1]:
            if status in (Job.Status.PENDING, Job.Status.ENQUEUED) and is_due:
                handoffs.append(Handoff(database, *row))
    return handoffs
