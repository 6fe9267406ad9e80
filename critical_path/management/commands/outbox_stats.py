"""``manage.py outbox_stats``: the outbox at a glance, as a table or as versioned JSON for monitoring."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import router

from critical_path.management import options as types
from critical_path.models import Job
from critical_path.operations import stats


class Command(BaseCommand):
    help = (
        "Counts by status, age of the oldest due pending job, throughput and error rate over the last hour, "
        "per side effect. --json prints a stable, versioned document for monitoring scripts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON (schema version 1).")
        parser.add_argument("--database", metavar="ALIAS", help="Database alias (default: the one Job is written to).")

    def handle(self, *, json: bool, database: str | None, **options: Any) -> None:
        figures = stats.collect(types.check_database(database or router.db_for_write(Job)))
        if json:
            self.stdout.write(_dumps(figures.as_dict()))
        else:
            self._table(figures)

    def _table(self, figures: stats.Stats) -> None:
        statuses = list(Job.Status.values)
        header = ["side effect", *statuses, "oldest due", "ok/min", "ok/h", "err/h", "err rate"]
        rows = [["(all)", *self._row(figures.total, statuses)]]
        rows += [[path, *self._row(effect, statuses)] for path, effect in sorted(figures.effects.items())]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        self.stdout.write(f"Database {figures.database!r} at {figures.now:%Y-%m-%d %H:%M:%S %Z}")
        for row in [header, *rows]:
            cells = [str(cell).ljust(widths[0]) if i == 0 else str(cell).rjust(widths[i]) for i, cell in enumerate(row)]
            self.stdout.write("  ".join(cells).rstrip())

    @staticmethod
    def _row(effect: stats.EffectStats, statuses: list[str]) -> list[str]:
        age = effect.oldest_pending_age_seconds
        rate = effect.error_rate_last_hour
        return [
            *(str(effect.counts[status]) for status in statuses),
            "-" if age is None else f"{age:.0f}s",
            str(effect.succeeded_last_minute),
            str(effect.succeeded_last_hour),
            str(effect.failed_last_hour + effect.dead_last_hour),
            "-" if rate is None else f"{rate:.1%}",
        ]


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True)
