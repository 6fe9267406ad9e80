"""``manage.py relay_outbox``: the relay as a long-running process (or one pass with ``--once``)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from critical_path.conf import settings
from critical_path.exceptions import RelayBusy
from critical_path.management.options import add_databases_argument, check_database, positive_float
from critical_path.models import job_databases
from critical_path.observability import liveness
from critical_path.relay import passes


class Command(BaseCommand):
    help = (
        "Publish outbox jobs whose hand-off was lost, delayed jobs and retries that are due, and jobs whose message "
        "looks lost; rescue jobs whose worker died. Runs until SIGTERM or SIGINT, or one pass with --once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        add_databases_argument(parser)
        parser.add_argument(
            "--interval",
            type=positive_float,
            default=None,
            help="Seconds between passes (default: CRITICAL_PATH_RELAY_INTERVAL, 5).",
        )
        parser.add_argument(
            "--liveness-file",
            metavar="PATH",
            help="Touch this file after each pass, for a liveness probe that checks its age.",
        )

    def handle(
        self,
        *,
        once: bool,
        databases: list[str] | None,
        interval: float | None,
        liveness_file: str | None,
        **options: Any,
    ) -> None:
        databases = [check_database(alias) for alias in databases or job_databases()]
        relayer = passes.Relay(databases)
        self.liveness_file = liveness_file
        try:
            if once:
                self._report(relayer.run_pass(), always=True)
            else:
                self._serve(relayer, interval or settings.RELAY_INTERVAL)
        except RelayBusy as exc:
            raise CommandError(str(exc)) from exc

    def _serve(self, relayer: passes.Relay, interval: float) -> None:
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if stop.is_set():  # asked twice: stop now
                raise KeyboardInterrupt
            self.stderr.write(f"{signal.Signals(signum).name}: finishing the current batch, then stopping.")
            stop.set()

        previous = {number: signal.signal(number, request_stop) for number in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.stdout.write(f"Relaying {', '.join(relayer.databases)} every {interval:g} s.")
            for results in relayer.serve(interval, stop):
                self._report(results, always=False)
            self.stdout.write("Relay stopped.")
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _report(self, results: list[passes.PassResult], *, always: bool) -> None:
        if self.liveness_file:
            liveness.touch(Path(self.liveness_file))
        for result in results:
            if result.broker_down or result.error:
                self.stderr.write(str(result))
            elif always or result.handled:
                self.stdout.write(str(result))
