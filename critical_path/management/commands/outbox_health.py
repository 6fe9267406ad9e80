"""``manage.py outbox_health``: the health view's report on the command line; exit status 1 when degraded."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from critical_path.management.options import check_database
from critical_path.operations import health


class Command(BaseCommand):
    help = (
        "Report the outbox ready or degraded, with reasons: no recent relay pass, the oldest pending job too old, "
        "dead letters above CRITICAL_PATH_HEALTH_DEAD_LETTER_LIMIT, the broker unreachable. Exits 1 when degraded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Database alias to check (repeatable; default: every alias the outbox migrates to).",
        )
        parser.add_argument("--no-broker", action="store_true", help="Do not check the broker.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *, databases: list[str] | None, no_broker: bool, json: bool, **options: Any) -> None:
        aliases = [check_database(alias) for alias in databases] if databases else None
        report = health.check(aliases, broker=not no_broker)
        if json:
            self.stdout.write(_dumps(report.as_dict()))
        else:
            self.stdout.write(report.status)
            for reason in report.reasons:
                self.stdout.write(f"- {reason}")
        if not report.ready:
            raise SystemExit(1)


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True)
