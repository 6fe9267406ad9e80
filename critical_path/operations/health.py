"""Is the outbox healthy? One report behind the health view and ``manage.py outbox_health``.

``ready`` or ``degraded``, with a reason per problem: no relay pass recently,
the oldest due pending job too old (nobody publishes), dead letters above a
threshold, a broker that cannot be reached. A few indexed queries per
database and one bounded broker connection: cheap enough for a probe every
few seconds. Times are the database's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.db import DatabaseError
from django.db.models import Max, Min

from critical_path.conf import settings
from critical_path.core import clock
from critical_path.models import Job, RelayHeartbeat, job_databases
from critical_path.publishing.publisher import bounded_transport_options


@dataclass
class Report:
    """The outcome of one health check: ``ready`` unless some ``reasons`` were found."""

    reasons: list[str] = field(default_factory=list)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.reasons

    @property
    def status(self) -> str:
        return "ready" if self.ready else "degraded"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": self.reasons, "databases": self.figures}


def check(databases: list[str] | None = None, *, broker: bool = True) -> Report:
    """Check each database (default: every one the outbox uses) and, unless ``broker=False``, the broker."""
    report = Report()
    for database in databases or job_databases():
        _check_database(database, report)
    if broker:
        _check_broker(report)
    return report


def _check_database(database: str, report: Report) -> None:
    try:
        now = clock.now(database)
        last_run = RelayHeartbeat.objects.using(database).aggregate(last=Max("last_run_at"))["last"]
        jobs = Job.objects.using(database).order_by()
        oldest = jobs.pending_due().aggregate(oldest=Min("available_at"))
        dead = jobs.dead().count()
    except DatabaseError as exc:
        report.reasons.append(f"database {database} unreachable: {type(exc).__name__}: {exc}".strip())
        return
    relay_age = (now - last_run).total_seconds() if last_run else None
    pending_age = max(0.0, (now - oldest["oldest"]).total_seconds()) if oldest["oldest"] else None
    report.figures[database] = {
        "relay_last_run_age_seconds": relay_age,
        "oldest_pending_age_seconds": pending_age,
        "dead_letters": dead,
    }
    relay_limit = settings.HEALTH_RELAY_MAX_AGE
    if relay_age is None:
        report.reasons.append(f"no relay has run on database {database}")
    elif relay_age > relay_limit:
        report.reasons.append(f"relay last ran {relay_age:.0f} s ago on database {database} (limit {relay_limit:g} s)")
    pending_limit = settings.HEALTH_PENDING_MAX_AGE
    if pending_age is not None and pending_age > pending_limit:
        report.reasons.append(
            f"oldest pending job waits {pending_age:.0f} s on database {database} (limit {pending_limit:g} s)"
        )
    if dead > settings.HEALTH_DEAD_LETTER_LIMIT:
        report.reasons.append(f"{dead} dead letters on database {database} (limit {settings.HEALTH_DEAD_LETTER_LIMIT})")


def _check_broker(report: Report) -> None:
    try:
        options = bounded_transport_options(current_app)
        with current_app.connection_for_write(transport_options=options) as connection:
            connection.ensure_connection(max_retries=1, timeout=math.ceil(settings.BROKER_TIMEOUT))
    except Exception as exc:  # any transport's connection error
        report.reasons.append(f"broker unreachable: {type(exc).__name__}: {exc}".strip())
