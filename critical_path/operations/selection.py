"""Choosing jobs: the commands' ``JobFilter``, and the side-effect paths the admin's filter and the commands know.

A dead job's time is when it was dead-lettered (``finished_at``). A failed job
records no failure time; the closest its row holds is ``started_at``, the start
of the attempt that failed, at most one time limit (plus lease grace) before
the failure. So ``since``/``until`` compare ``finished_at`` for dead jobs and
``started_at`` for failed ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from critical_path.core.registry import registered
from critical_path.models import Job, JobQuerySet


@dataclass(frozen=True)
class JobFilter:
    """Which jobs to act on; empty fields do not narrow."""

    statuses: Sequence[str] = (Job.Status.DEAD,)
    effects: Sequence[str] = ()
    ids: Sequence[int] = ()
    queues: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    error_contains: str = ""

    def queryset(self, using: str) -> JobQuerySet:
        """The matching jobs of database ``using``, in id order."""
        jobs = Job.objects.using(using).filter(status__in=list(self.statuses))
        if self.effects:
            jobs = jobs.filter(effect__in=list(self.effects))
        if self.ids:
            jobs = jobs.filter(pk__in=list(self.ids))
        if self.queues:
            jobs = jobs.filter(queue__in=list(self.queues))
        if self.error_contains:
            jobs = jobs.filter(last_error__contains=self.error_contains)
        if self.since is not None or self.until is not None:
            jobs = jobs.filter(_between("finished_at", Job.Status.DEAD, self) | _between("started_at", None, self))
        return jobs.order_by("pk")


def _between(field: str, status: str | None, bounds: JobFilter) -> Q:
    # Dead jobs are timed by ``field`` = finished_at; every other status (failed) by started_at.
    condition = Q(status=status) if status else ~Q(status=Job.Status.DEAD)
    if bounds.since is not None:
        condition &= Q(**{f"{field}__gte": bounds.since})
    if bounds.until is not None:
        condition &= Q(**{f"{field}__lt": bounds.until})
    return condition


def known_effects(jobs: JobQuerySet) -> set[str]:
    """Side-effect paths declared in this process, and those of the live and dead jobs among ``jobs``.

    Live and dead rows are read through their partial indexes; succeeded,
    discarded and coalesced ones, the millions, are not read at all. ``jobs``
    is every job of a database, or fewer: an admin page of one status offers
    the paths of its own jobs.
    """
    unfinished = jobs.filter(status__in=[*Job.LIVE_STATUSES, Job.Status.DEAD]).order_by()
    present = unfinished.values_list("effect", flat=True).distinct()
    return {effect.path for effect in registered()} | set(present)


def unknown_effects(effects: Sequence[str], using: str) -> dict[str, list[str]]:
    """Each of ``effects`` that names no known side effect, with the known paths closest to it."""
    if not effects:
        return {}
    known = known_effects(Job.objects.using(using))
    return {path: difflib.get_close_matches(path, known, n=3) for path in effects if path not in known}
