"""``manage.py relay_outbox``: publish jobs whose hand-off was lost, delayed jobs and retries that are due."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router

from critical_path import relay
from critical_path.models import Job


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Publish outbox jobs that are due: lost hand-offs, delayed jobs and retries."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Database alias to relay (repeatable; default: every alias the outbox migrates to).",
        )
        parser.add_argument("--interval", type=positive_float, default=5.0, help="Seconds between passes (default: 5).")

    def handle(self, *, once: bool, databases: list[str] | None, interval: float, **options: Any) -> None:
        databases = databases or [alias for alias in connections.settings if router.allow_migrate_model(alias, Job)]
        unknown = [alias for alias in databases if alias not in connections.settings]
        if unknown:
            raise CommandError(
                f"Unknown database alias {', '.join(unknown)}; known: {', '.join(sorted(connections.settings))}."
            )
        while True:
            for result in relay.run(databases):
                if result.broker_down:
                    self.stderr.write(f"{result.database}: broker unreachable; {result.published} published.")
                elif once or result.published:
                    self.stdout.write(f"{result.database}: {result.published} published.")
            if once:
                return
            time.sleep(interval)
