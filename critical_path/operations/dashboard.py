"""The admin's dashboard: its figures, read from one database, and the page that lays them out.

``figures()`` is ``stats.collect`` plus what only the page shows: timings,
a per-minute series, queue depths and the relays' heartbeats; every query
reads a partial index, and the timings a bounded sample. The throughput chart
is drawn on the server as inline SVG and coloured with the admin's own CSS
variables, so it needs no script, no CDN, and follows the admin's dark mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import router
from django.db.models import Count, DurationField, ExpressionWrapper, F
from django.db.models.functions import Coalesce, Greatest, TruncMinute
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from critical_path.models import Job, JobQuerySet, RelayHeartbeat, now_plus
from critical_path.operations import stats
from critical_path.operations.stats import HOUR, Stats

WIDTH, HEIGHT, PAD = 720, 160, 28


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
    """One minute of the chart: jobs that succeeded in it, attempts that failed in it."""

    start: datetime
    succeeded: int = 0
    errors: int = 0


@dataclass
class DashboardFigures:
    """Everything the admin's dashboard shows, read from one database."""

    stats: Stats
    finished_within: timedelta
    timings: dict[str, Timings]
    total_timings: Timings
    minutes: list[Minute]
    queue_depths: dict[str, int]
    relays: list[RelayHeartbeat]


def figures(
    using: str, *, finished_within: timedelta = HOUR, sample: int = 10_000, relays: int = 10
) -> DashboardFigures:
    """The dashboard's figures: ``stats.collect`` plus timings, a per-minute series, queue depths and relays.

    Timings come from at most ``sample`` of the jobs that finished in the last
    hour, newest first, so the cost is bounded whatever the table holds. Queue
    wait (``models.queue_wait``) is recorded by the row for the first attempt
    only: jobs that took more attempts count in run time but not in queue wait.
    """
    collected = stats.collect(using, finished_within=finished_within)
    jobs = Job.objects.using(using).order_by()
    # Durations are computed by the database: loading the four timestamps of 10,000 rows costs more than
    # every query of the page together (each timestamptz goes through a Python parser).
    ready = Greatest("available_at", Coalesce("enqueued_at", "available_at"))
    rows = (
        jobs.ended_since(HOUR)
        .order_by("-finished_at")
        .annotate(
            run=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
            wait=ExpressionWrapper(F("started_at") - ready, output_field=DurationField()),
        )
        .values_list("effect", "attempts", "run", "wait")[:sample]
    )
    waits: dict[str, list[float]] = {}
    runs: dict[str, list[float]] = {}
    for effect, attempts, run, wait in rows:
        if run is None:  # never started (a job discarded while pending)
            continue
        runs.setdefault(effect, []).append(run.total_seconds())
        if attempts == 1:  # models.queue_wait, in SQL: started_at - max(enqueued_at, available_at), never below 0
            waits.setdefault(effect, []).append(max(0.0, wait.total_seconds()))
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
    return DashboardFigures(
        collected, finished_within, timings, total_timings, _minutes(jobs, collected.now),
        dict(sorted(queue_depths.items())), heartbeats,
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


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context of the dashboard for the database chosen by ``?database=`` (default: Job's)."""
    default = router.db_for_read(Job)
    using = request.GET.get("database", default)
    if using not in django_settings.DATABASES:
        using = default
    read = figures(using)
    total = read.stats.total
    per_minute = total.succeeded_last_hour / 60
    effects = [
        {
            "path": path,
            "stats": effect_stats,
            "timings": read.timings.get(path),
        }
        for path, effect_stats in sorted(read.stats.effects.items())
    ]
    last_relay = read.relays[0] if read.relays else None
    return {
        "title": _("Outbox dashboard"),
        "database": using,
        "databases": list(django_settings.DATABASES) if len(django_settings.DATABASES) > 1 else [],
        "figures": read,
        "total": total,
        "counts": [(Job.Status(status).label, status, count) for status, count in total.counts.items()],
        "finished_window_hours": int(read.finished_within.total_seconds() // 3600),
        "succeeded_per_minute": per_minute,
        "error_rate": total.error_rate_last_hour,
        "effects": effects,
        "last_relay": last_relay,
        "relay_age_seconds": (read.stats.now - last_relay.last_run_at).total_seconds() if last_relay else None,
        "chart": chart(read.minutes),
    }


def chart(minutes: list[Minute]) -> SafeString:
    """Succeeded jobs (bars) and errors (red bars in front) per minute over the last hour, as inline SVG."""
    peak = max([minute.succeeded + minute.errors for minute in minutes] + [1])
    plot_width, plot_height = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = plot_width / max(len(minutes), 1)

    def bar(index: int, value: int, css_class: str, label: str) -> tuple[Any, ...]:
        height = plot_height * value / peak
        x = PAD + index * slot
        return (
            css_class,
            f"{x:.1f}",
            f"{PAD + plot_height - height:.1f}",
            f"{max(slot - 1, 1):.1f}",
            f"{height:.1f}",
            label,
        )

    bars = []
    for index, minute in enumerate(minutes):
        when = minute.start.strftime("%H:%M")
        if minute.succeeded:
            bars.append(bar(index, minute.succeeded, "ok", f"{when}: {minute.succeeded} " + _("succeeded")))
        if minute.errors:
            bars.append(bar(index, minute.errors, "error", f"{when}: {minute.errors} " + _("errors")))
    rects = format_html_join(
        "",
        '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
        bars,
    )
    first = minutes[0].start.strftime("%H:%M") if minutes else ""
    last = minutes[-1].start.strftime("%H:%M") if minutes else ""
    return format_html(
        '<svg class="cp-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        '<line class="axis" x1="{pad}" y1="{base}" x2="{right}" y2="{base}"/>'
        '<text x="{pad}" y="{below}">{first}</text>'
        '<text x="{right}" y="{below}" text-anchor="end">{last}</text>'
        '<text x="{pad}" y="{above}">{peak} / min</text>'
        "{rects}</svg>",
        w=WIDTH,
        h=HEIGHT,
        label=_("Succeeded jobs and errors per minute, last hour"),
        pad=PAD,
        base=PAD + plot_height,
        right=WIDTH - PAD,
        below=HEIGHT - 8,
        above=PAD - 8,
        first=first,
        last=last,
        peak=peak,
        rects=rects,
    )
