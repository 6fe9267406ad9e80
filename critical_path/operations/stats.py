"""The outbox at a glance: counts by status, oldest due pending job, throughput and error rate, per side effect.

One implementation behind ``outbox_stats`` and the admin's dashboard. Every
time is the database's: ``now`` is read from it, windows are ``Now()`` minus
an interval. The oldest pending job is found through the partial index on due
jobs. A failed job records no failure time; it counts in the last hour's
errors if the attempt that failed started within it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncMinute

from critical_path.core import clock
from critical_path.models import Job, JobQuerySet, RelayHeartbeat, now_plus, queue_wait

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
    parts = [
        jobs.filter(status__in=[Job.Status.PENDING, Job.Status.FAILED]),
        jobs.filter(status=Job.Status.ENQUEUED),
        jobs.filter(status=Job.Status.RUNNING),
        jobs.filter(status=Job.Status.DEAD),
        finished,
    ]
    grouped = [part.values("effect", "status").annotate(n=Count("pk")) for part in parts]
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


@dataclass
class Percentiles:
    """p50, p95 and p99 of some durations, in seconds, and how many there were."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        ordered = sorted(values)
        return cls(len(ordered), *(percentile(ordered, fraction) for fraction in (0.5, 0.95, 0.99)))


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's ``percentile_cont``) of sorted values."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Timings:
    """Queue wait (first attempts only) and run time (last attempt) of jobs that finished in a window."""

    queue_wait: Percentiles
    run_time: Percentiles


@dataclass
class Minute:
    start: datetime
    succeeded: int = 0
    errors: int = 0


@dataclass
class Health:
    """Everything the admin's dashboard shows, read from one database."""

    stats: Stats
    finished_within: timedelta
    timings: dict[str, Timings]
    total_timings: Timings
    minutes: list[Minute]
    queue_depths: dict[str, int]
    relays: list[RelayHeartbeat]


def health(using: str, *, finished_within: timedelta = HOUR, sample: int = 10_000, relays: int = 10) -> Health:
    """The dashboard's figures: ``collect`` plus timings, a per-minute series, queue depths and relays.

    Timings come from at most ``sample`` of the jobs that finished in the last
    hour, newest first, so the cost is bounded whatever the table holds. Queue
    wait (``models.queue_wait``) is recorded by the row for the first attempt
    only: jobs that took more attempts count in run time but not in queue wait.
    """
    stats = collect(using, finished_within=finished_within)
    jobs = Job.objects.using(using).order_by()
    rows = (
        jobs.ended_since(HOUR)
        .order_by("-finished_at")
        .values_list("effect", "attempts", "available_at", "enqueued_at", "started_at", "finished_at")[:sample]
    )
    waits: dict[str, list[float]] = {}
    runs: dict[str, list[float]] = {}
    for effect, attempts, available_at, enqueued_at, started_at, finished_at in rows:
        if started_at is None or finished_at is None:
            continue
        runs.setdefault(effect, []).append((finished_at - started_at).total_seconds())
        if attempts == 1:
            waits.setdefault(effect, []).append(queue_wait(available_at, enqueued_at, started_at).total_seconds())
    timings = {
        effect: Timings(Percentiles.of(waits.get(effect, [])), Percentiles.of(runs.get(effect, [])))
        for effect in sorted(set(waits) | set(runs))
    }
    total_timings = Timings(
        Percentiles.of([wait for values in waits.values() for wait in values]),
        Percentiles.of([run for values in runs.values() for run in values]),
    )
    depths = [
        jobs.pending_due().values("queue").annotate(n=Count("pk")),
        jobs.filter(status=Job.Status.ENQUEUED).values("queue").annotate(n=Count("pk")),
    ]
    queue_depths: dict[str, int] = {}
    for row in depths[0].union(depths[1], all=True):
        queue_depths[row["queue"]] = queue_depths.get(row["queue"], 0) + row["n"]
    heartbeats = list(RelayHeartbeat.objects.using(using).order_by("-last_run_at")[:relays])
    return Health(
        stats, finished_within, timings, total_timings, _minutes(jobs, stats.now), dict(sorted(queue_depths.items())),
        heartbeats,
    )  # fmt: skip


def _minutes(jobs: JobQuerySet, now: datetime) -> list[Minute]:
    """Succeeded jobs and errors (failed or dead-lettered attempts) per minute over the last hour, oldest first."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    minutes = {start + timedelta(minutes=index): Minute(start + timedelta(minutes=index)) for index in range(60)}
    ended = jobs.ended_since(HOUR)
    failed = jobs.failed().filter(started_at__gte=now_plus(-HOUR))
    series = [
        ended.annotate(minute=TruncMinute("finished_at")).values("minute", "status").annotate(n=Count("pk")),
        failed.annotate(minute=TruncMinute("started_at")).values("minute", "status").annotate(n=Count("pk")),
    ]
    for row in series[0].union(series[1], all=True):
        minute = minutes.get(_aware(row["minute"]))
        if minute is None:
            continue
        if row["status"] == Job.Status.SUCCEEDED:
            minute.succeeded += row["n"]
        else:
            minute.errors += row["n"]
    return list(minutes.values())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None or not django_settings.USE_TZ else value.replace(tzinfo=UTC)
