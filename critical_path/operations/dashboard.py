"""The admin dashboard's page: ``stats.health`` laid out for people, with a throughput chart drawn as inline SVG.

The chart is drawn on the server and coloured with the admin's own CSS
variables, so it needs no script, no CDN, and follows the admin's dark mode.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.db import router
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from critical_path.models import Job
from critical_path.operations import stats

WIDTH, HEIGHT, PAD = 720, 160, 28


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context of the dashboard for the database chosen by ``?database=`` (default: Job's)."""
    default = router.db_for_read(Job)
    using = request.GET.get("database", default)
    if using not in django_settings.DATABASES:
        using = default
    health = stats.health(using)
    total = health.stats.total
    per_minute = total.succeeded_last_hour / 60
    effects = [
        {
            "path": path,
            "stats": figures,
            "timings": health.timings.get(path),
        }
        for path, figures in sorted(health.stats.effects.items())
    ]
    last_relay = health.relays[0] if health.relays else None
    return {
        "title": _("Outbox dashboard"),
        "database": using,
        "databases": list(django_settings.DATABASES) if len(django_settings.DATABASES) > 1 else [],
        "health": health,
        "total": total,
        "counts": [(Job.Status(status).label, status, count) for status, count in total.counts.items()],
        "finished_window_hours": int(health.finished_within.total_seconds() // 3600),
        "succeeded_per_minute": per_minute,
        "error_rate": total.error_rate_last_hour,
        "effects": effects,
        "last_relay": last_relay,
        "relay_age_seconds": (health.stats.now - last_relay.last_run_at).total_seconds() if last_relay else None,
        "chart": chart(health.minutes),
    }


def chart(minutes: list[stats.Minute]) -> SafeString:
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
