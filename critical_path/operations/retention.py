"""Pruning finished jobs, so the table stays small.

Deletes go in batches, each a short transaction of one
``DELETE … WHERE id IN (SELECT id … LIMIT n) AND status IN (…) AND finished_at < …``,
so no lock is held long and the relay, workers and emitters carry on meanwhile.
The status and age are tested on the deleted row itself, not only in the
subquery: a DELETE that waited on a row lock (a replay moving a dead letter
back to pending) re-checks only its own conditions on the row's new version,
and the subquery's answer comes from before the wait. Only finished jobs are
ever deleted: live ones (pending, enqueued, running, failed) are refused, and
dead letters only when asked for by name, since they are work still owed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction

from critical_path.models import Job, JobQuerySet, now_plus

#: Statuses pruned when none are named.
DEFAULT_STATUSES = (Job.Status.SUCCEEDED, Job.Status.DISCARDED, Job.Status.COALESCED)
#: Statuses that may be pruned at all; dead only when named.
PRUNABLE_STATUSES = (Job.Status.SUCCEEDED, Job.Status.DISCARDED, Job.Status.COALESCED, Job.Status.DEAD)


def prunable(older_than: timedelta, *, statuses: Sequence[str] = DEFAULT_STATUSES, using: str) -> JobQuerySet:
    """Jobs of ``statuses`` finished more than ``older_than`` ago (by the database's clock)."""
    refused = sorted(set(statuses) - set(PRUNABLE_STATUSES))
    if refused:
        raise ValueError(
            f"Refusing to prune jobs that are {', '.join(refused)}: only finished jobs "
            f"({', '.join(PRUNABLE_STATUSES)}) can be pruned; discard live jobs first."
        )
    return Job.objects.using(using).filter(status__in=list(statuses), finished_at__lt=now_plus(-older_than))


def prune(
    older_than: timedelta, *, statuses: Sequence[str] = DEFAULT_STATUSES, using: str, batch_size: int = 1000
) -> int:
    """Delete the jobs ``prunable()`` selects, ``batch_size`` per transaction; returns how many."""
    jobs = prunable(older_than, statuses=statuses, using=using)
    total = 0
    while True:
        with transaction.atomic(using=using):
            deleted, _ = jobs.filter(pk__in=jobs.values("pk")[:batch_size]).delete()
        total += deleted
        if deleted < batch_size:
            return total
