"""Ordering keys: jobs that share a key run one at a time, in the order of their ids.

The rule lives in the claim (``JobQuerySet.unblocked``): a keyed job is claimed
only when no job of its key with a lower id is unfinished and none with a higher
id is running. A message for a blocked job is dropped and the job goes back to
``pending`` (``JobQuerySet.wait``); the relay leaves blocked jobs alone. So the
next job of a key is published by whoever ends the line's current head: the
worker whose job succeeded, the operator who discarded one. If that hand-off is
lost (the process died after its commit), the relay publishes the job once its
turn has come, after its grace period.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now

from critical_path.models import Job
from critical_path.publishing import dispatcher
from critical_path.publishing.publisher import HANDOFF_COLUMNS, Handoff


def hand_off_next(database: str, keys: Iterable[str]) -> None:
    """Publish the next job of each key, if it heads its key's line and is due; call after the head finished.

    The line is the key's pending, enqueued, running, failed and dead jobs by
    id: one probe of the ordering index, with no subquery for Django to compile.
    """
    line = Job.objects.using(database).filter(status__in=Job.ORDERED_STATUSES).order_by("pk")
    due = ExpressionWrapper(Q(available_at__lte=Now()), output_field=BooleanField())
    for key in set(keys):
        head = line.filter(ordering_key=key).annotate(due=due)
        for *row, status, is_due in head.values_list(*HANDOFF_COLUMNS, "status", "due")[:1]:
            if status in (Job.Status.PENDING, Job.Status.ENQUEUED) and is_due:
                dispatcher.submit(Handoff(database, *row))


def blocker(job: Job) -> Job | None:
    """The job that keeps ``job`` waiting (the first of its key's line), or None if it does not wait."""
    if not job.ordering_key or job.status not in Job.CLAIMABLE_STATUSES:
        return None
    ahead = Job.objects.using(job._state.db).filter(ordering_key=job.ordering_key, status__in=Job.ORDERED_STATUSES)
    running = ahead.filter(status=Job.Status.RUNNING).exclude(pk=job.pk).order_by("pk").first()
    return ahead.filter(pk__lt=job.pk).order_by("pk").first() or running
