"""``manage.py prune_outbox``: delete finished jobs older than a duration, in short batches."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router

from critical_path.management import options as types
from critical_path.management import progress
from critical_path.models import Job
from critical_path.operations import retention


class Command(BaseCommand):
    help = (
        "Delete succeeded, discarded and coalesced jobs (and dead ones, only with --status dead) finished more than "
        "--older-than ago, in batches of short transactions. Live jobs are never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=types.duration,
            required=True,
            metavar="DURATION",
            help="Finished at least this long ago: 30m, 12h, 7d, 2w.",
        )
        parser.add_argument(
            "--status",
            action="append",
            dest="statuses",
            choices=Job.Status.values,
            help="Status to prune (repeatable; default: succeeded, discarded and coalesced; dead only when named).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--database", metavar="ALIAS", help="Database alias (default: the one Job is written to).")
        parser.add_argument(
            "--batch-size", type=types.positive_int, default=1000, metavar="N", help="Rows per DELETE (default: 1000)."
        )

    def handle(
        self,
        *,
        older_than: timedelta,
        statuses: list[str] | None,
        dry_run: bool,
        database: str | None,
        batch_size: int,
        **options: Any,
    ) -> None:
        database = types.check_database(database or router.db_for_write(Job))
        statuses = statuses or list(retention.DEFAULT_STATUSES)
        try:
            jobs = retention.prunable(older_than, statuses=statuses, using=database)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        which = ", ".join(sorted(set(statuses)))
        if dry_run:
            count = progress.jobs(jobs.count())
            self.stdout.write(f"Would delete {count} ({which}) finished more than {older_than} ago.")
            return
        deleted = retention.prune(older_than, statuses=statuses, using=database, batch_size=batch_size)
        self.stdout.write(f"Deleted {progress.jobs(deleted)} ({which}) finished more than {older_than} ago.")
