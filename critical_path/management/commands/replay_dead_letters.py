"""``manage.py replay_dead_letters``: replay dead (or failed) jobs by filter, in batches, paced, canary first."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import router

from critical_path.management import options as types
from critical_path.management.progress import Progress
from critical_path.management.progress import jobs as counted
from critical_path.models import Job
from critical_path.operations import rollout
from critical_path.operations.selection import JobFilter, unknown_effects

SAMPLE_SIZE = 10


class Command(BaseCommand):
    help = (
        "Replay dead jobs (and, with --status failed, failed ones): back to pending with their attempts reset, "
        "published again. Filters narrow the selection; --dry-run shows it; --rate and --canary pace the replay."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            action="append",
            dest="statuses",
            choices=[Job.Status.DEAD, Job.Status.FAILED],
            help="Status to replay (repeatable; default: dead).",
        )
        parser.add_argument(
            "--effect", action="append", dest="effects", metavar="PATH", help="Side-effect path (repeatable)."
        )
        parser.add_argument(
            "--id", action="append", dest="ids", type=types.positive_int, metavar="ID", help="Job id (repeatable)."
        )
        parser.add_argument(
            "--since",
            type=types.moment,
            metavar="WHEN",
            help="Dead-lettered (dead jobs) or last attempt started (failed jobs) at or after this ISO date or time.",
        )
        parser.add_argument("--until", type=types.moment, metavar="WHEN", help="… before this ISO date or time.")
        parser.add_argument("--error-contains", default="", metavar="TEXT", help="Last error contains TEXT.")
        parser.add_argument(
            "--queue", action="append", dest="queues", metavar="QUEUE", help="Celery queue (repeatable)."
        )
        parser.add_argument(
            "--limit", type=types.positive_int, metavar="N", help="Replay at most this many jobs, oldest id first."
        )
        parser.add_argument(
            "--database", metavar="ALIAS", help="Database alias (default: the database Job is written to)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Show the count and a sample; change nothing.")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument(
            "--rate", type=types.positive_float, metavar="N", help="Replay at most this many jobs per second."
        )
        parser.add_argument(
            "--canary", type=types.positive_int, metavar="N", help="Replay N jobs first; go on only if they succeed."
        )
        parser.add_argument(
            "--canary-timeout",
            type=types.positive_float,
            default=300.0,
            metavar="SECONDS",
            help="How long to wait for the canary jobs (default: 300).",
        )
        parser.add_argument(
            "--batch-size",
            type=types.positive_int,
            default=500,
            metavar="N",
            help="Jobs per transaction (default: 500).",
        )

    def handle(
        self,
        *,
        statuses: list[str] | None,
        effects: list[str] | None,
        ids: list[int] | None,
        since: Any,
        until: Any,
        error_contains: str,
        queues: list[str] | None,
        limit: int | None,
        database: str | None,
        dry_run: bool,
        yes: bool,
        rate: float | None,
        canary: int | None,
        canary_timeout: float,
        batch_size: int,
        **options: Any,
    ) -> None:
        database = types.check_database(database or router.db_for_write(Job))
        for path, matches in unknown_effects(effects or [], database).items():
            hint = f" Did you mean {' or '.join(matches)}?" if matches else ""
            raise CommandError(
                f"Unknown side effect {path!r}: no live or dead job in {database!r} and none declared has it.{hint}"
            )
        job_filter = JobFilter(
            statuses=statuses or [Job.Status.DEAD],
            effects=effects or [],
            ids=ids or [],
            queues=queues or [],
            since=since,
            until=until,
            error_contains=error_contains,
        )
        jobs = job_filter.queryset(database)
        total = jobs.count()
        total = min(total, limit) if limit else total
        if not total:
            self.stdout.write("No jobs match; nothing to replay.")
            return
        if dry_run:
            self._preview(jobs, total)
            return
        if not yes and not self._confirm(total, database, options.get("stdin") or sys.stdin):
            self.stdout.write("Cancelled; nothing replayed.")
            return
        progress = Progress(self.stdout, total)
        summary = rollout.replay(
            jobs,
            using=database,
            limit=total,
            batch_size=batch_size,
            rate=rate,
            canary=canary,
            canary_timeout=canary_timeout,
            listener=Report(self.stdout, progress),
        )
        if summary.canary is not None and not summary.canary.ok:
            self.stdout.write(str(summary))
            raise CommandError(_canary_error(summary.canary, canary_timeout))
        progress.finish()
        self.stdout.write(str(summary))
        if summary.failed:
            raise CommandError(f"{counted(summary.failed)} could not be replayed: {'; '.join(summary.errors)}")

    def _preview(self, jobs: Any, total: int) -> None:
        sample = min(total, SAMPLE_SIZE)
        self.stdout.write(f"Would replay {counted(total)} (dry run: nothing changed). First {sample}:")
        for job in jobs.only("pk", "effect", "status", "finished_at", "started_at", "last_error")[:SAMPLE_SIZE]:
            when = job.finished_at if job.status == Job.Status.DEAD else job.started_at
            moment = f"{when:%Y-%m-%d %H:%M:%S}" if when else "-"
            self.stdout.write(f"  #{job.pk} {job.effect} {job.status} {moment} {job.error_line}".rstrip())

    def _confirm(self, total: int, database: str, stdin: TextIO) -> bool:
        if not stdin.isatty():
            raise CommandError(
                f"Refusing to replay {counted(total)} without confirmation: stdin is not a terminal. Pass --yes, "
                "after checking the selection with --dry-run."
            )
        self.stdout.write(f"Replay {counted(total)} on database {database!r}? [y/N] ", ending="")
        self.stdout.flush()
        return stdin.readline().strip().lower() in ("y", "yes")


class Report(rollout.Listener):
    """Prints a replay's canary and progress as they come."""

    def __init__(self, out: OutputWrapper, progress: Progress) -> None:
        self.out, self.progress = out, progress

    def canary_replayed(self, ids: list[int], timeout: float) -> None:
        self.out.write(f"Canary: {counted(len(ids))} replayed; waiting up to {timeout:g} s for them to run.")

    def canary_succeeded(self, result: rollout.CanaryResult) -> None:
        self.out.write(f"Canary succeeded: {counted(len(result.succeeded))}; replaying the rest.")

    def progressed(self, summary: rollout.Summary) -> None:
        self.progress.update(summary.handled)


def _canary_error(result: rollout.CanaryResult, timeout: float) -> str:
    if result.failed:
        return (
            f"Canary failed: jobs {', '.join(map(str, result.failed))} did not succeed; the rest were left as they "
            "were. See their last error, fix the cause, and replay again."
        )
    return (
        f"Canary timed out after {timeout:g} s: jobs {', '.join(map(str, result.unfinished))} have not finished "
        "(is a worker consuming their queue?); the rest were left as they were."
    )
