"""The outbox at a glance: counts by status, oldest due pending job, throughput and error rate, per side effect.

One implementation behind ``outbox_stats`` and the admin's dashboard
(``dashboard.figures`` starts from ``collect``). Every time is the database's:
``now`` is read from it, windows are ``Now()`` minus an interval. The oldest
pending job is found through the partial index on due jobs. A failed job
records no failure time; it counts in the last hour's errors if the attempt
that failed started within it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q

from critical_path.core import clock
from critical_path.models import Job, JobQuerySet, now_plus

#: Version of the ``as_dict()`` layout; raised whenever a key changes meaning or goes away.
SCHEMA_VERSION = 1

HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)


@dataclass
class EffectStats:
    """Figures for one side effect, or for all of them."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Job.Status.values, 0))
    oldest_pending_age_seconds: float | None = None
    succeeded_last_minute: int = 0
    succeeded_last_hour: int = 0
    failed_last_hour: int = 0
    dead_last_hour: int = 0

    @property
    def error_rate_last_hour(self) -> float | None:
        """Attempts that failed (retried or dead-lettered) over attempts that ended, in the last hour."""
        errors = self.failed_last_hour + self.dead_last_hour
        ended = errors + self.succeeded_last_hour
        return errors / ended if ended else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate_last_hour": self.error_rate_last_hour}


@dataclass
class Stats:
    database: str
    now: datetime
    total: EffectStats
    effects: dict[str, EffectStats]

    def as_dict(self) -> dict[str, Any]:
        """The stable layout of ``outbox_stats --json`` (see its docs); ``version`` says which."""
        return {
            "version": SCHEMA_VERSION,
            "database": self.database,
            "now": self.now.isoformat(),
            "total": self.total.as_dict(),
            "effects": {path: stats.as_dict() for path, stats in sorted(self.effects.items())},
        }


def collect(using: str, *, finished_within: timedelta | None = None) -> Stats:
    """Read the figures of database ``using``: a few grouped queries and the database's clock.

    Every query reads one partial index per status group, so live counts stay
    cheap however many finished rows the table holds. ``finished_within``
    bounds the succeeded, discarded and coalesced counts to that window (the dashboard's
    choice); without it they are exact, which reads every finished row.
    """
    jobs = Job.objects.using(using).order_by()
    effects: dict[str, EffectStats] = {}
    total = EffectStats()

    def of(path: str) -> EffectStats:
        return effects.setdefault(path, EffectStats())

    finished = jobs.filter(status__in=[Job.Status.SUCCEEDED, Job.Status.DISCARDED, Job.Status.COALESCED])
    if finished_within is not None:
        finished = finished.filter(finished_at__gte=now_plus(-finished_within))
    grouped = [part.values("effect", "status").annotate(n=Count("pk")) for part in [*jobs.unfinished_arms(), finished]]
    for row in grouped[0].union(*grouped[1:], all=True):
        of(row["effect"]).counts[row["status"]] += row["n"]
        total.counts[row["status"]] += row["n"]
    now = clock.now(using)
    oldest = jobs.pending_due().values("effect")
    for pending in oldest.annotate(oldest=Min("available_at")):
        age = max(0.0, (now - pending["oldest"]).total_seconds())
        of(pending["effect"]).oldest_pending_age_seconds = age
        total.oldest_pending_age_seconds = max(total.oldest_pending_age_seconds or 0.0, age)
    windows = (
        _last_hour(jobs)
        .values("effect")
        .annotate(
            succeeded_last_minute=Count(
                "pk", filter=Q(status=Job.Status.SUCCEEDED, finished_at__gte=now_plus(-MINUTE))
            ),
            succeeded_last_hour=Count("pk", filter=Q(status=Job.Status.SUCCEEDED)),
            failed_last_hour=Count("pk", filter=Q(status=Job.Status.FAILED)),
            dead_last_hour=Count("pk", filter=Q(status=Job.Status.DEAD)),
        )
    )
    for window in windows:
        for name in ("succeeded_last_minute", "succeeded_last_hour", "failed_last_hour", "dead_last_hour"):
            setattr(of(window["effect"]), name, window[name])
            setattr(total, name, getattr(total, name) + window[name])
    return Stats(using, now, total, effects)


def _last_hour(jobs: JobQuerySet) -> JobQuerySet:
    """Jobs that ended in the last hour, and failed jobs whose failed attempt started in it."""
    return jobs.ended_since(HOUR) | jobs.failed().filter(started_at__gte=now_plus(-HOUR))
