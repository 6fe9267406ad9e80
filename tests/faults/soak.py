"""The soak: side effects emitted while the broker, the workers and a relay are killed, restarted and paused at random.

``python -m tests.faults.soak [--jobs N] [--duration SECONDS] [--seed S]`` emits
``N`` jobs of ``tests.faults.effects.applied_once`` in waves over ``--duration``
seconds of chaos: SIGKILL and restart of its redis-server, SIGSTOP/SIGCONT of
it, SIGKILL of a worker or a relay (each restarted, as a process manager
would). Then the chaos stops and the system drains (workers and relays running)
against a deadline. It prints one line and exits non-zero if a job was lost
(neither succeeded nor dead-lettered, or succeeded without its effect) or an
effect was applied more than once.

Everything runs on 127.0.0.1: a redis-server of its own, and two databases of
its own (created, then dropped) on the PostgreSQL server of ``DATABASE_URL``
(by default ``postgres://postgres@127.0.0.1:5432/postgres``). Every process and
server it started is stopped on the way out, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
EFFECT = "tests.faults.effects.applied_once"
ALIASES = ("default", "other")
#: Short knobs, so lost messages, dead workers and retries are put right within seconds. Emitters get them
#: too: a job's time limit, and so its lease, is the one its message was published with.
KNOBS = {
    "relay_grace": 1.0, "republish_after": 3.0, "time_limit": 10.0, "lease_grace": 2.0, "retry_backoff": 0.2,
    "retry_backoff_max": 2.0, "dispatcher_exit_timeout": 2.0,
}  # fmt: skip
WORKERS, RELAYS, WAVES = 2, 2, 10
MAX_DURATION, MAX_DRAIN = 300.0, 300.0


class Stop(Exception):
    """SIGTERM: end the run as Ctrl-C would."""


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="side effects to emit (3000)")
    parser.add_argument("--duration", type=float, default=60.0, help=f"seconds of chaos (60; at most {MAX_DURATION:g})")
    parser.add_argument("--drain", type=float, default=120.0, help=f"seconds to drain (120; at most {MAX_DRAIN:g})")
    parser.add_argument("--seed", type=int, default=None, help="seed of the chaos (random by default)")
    options = parser.parse_args()
    if options.jobs < 1:
        parser.error("--jobs must be at least 1")
    options.duration = min(max(options.duration, 0.0), MAX_DURATION)
    options.drain = min(max(options.drain, 1.0), MAX_DRAIN)
    if options.seed is None:
        options.seed = random.SystemRandom().randrange(1_000_000)
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    parts = urlsplit(database_url)
    if not parts.scheme.startswith("postgres") or parts.hostname != "127.0.0.1":
        parser.error(f"DATABASE_URL must be a PostgreSQL server on 127.0.0.1, not {database_url}")
    options.database_url = database_url
    return options


class Soak:
    def __init__(self, options: argparse.Namespace, directory: Path) -> None:
        from tests.faults.servers import RedisServer
        from tests.support.processes import Launcher

        self.options = options
        self.random = random.Random(options.seed)
        self.redis = RedisServer(directory)
        self.launcher = Launcher(directory, database_url=options.database_url)
        self.workers: list[Any] = []
        self.relays: list[Any] = []
        self.emitters: list[Any] = []
        self.events = 0
        self.keys: list[str] = []

    # Processes, kept running as a process manager would.

    def worker(self) -> Any:
        return self.launcher.worker(self.redis.url, concurrency=2, ready=False, **KNOBS)

    def relay(self) -> Any:
        return self.launcher.relay(self.redis.url, interval=0.5, **KNOBS)

    def supervise(self) -> None:
        """Replace any worker or relay that is gone (killed, or exited by itself)."""
        self.workers = [worker if worker.running else self.worker() for worker in self.workers]
        self.relays = [relay if relay.running else self.relay() for relay in self.relays]

    # Chaos.

    def kill_broker(self) -> None:
        self.redis.kill()
        time.sleep(self.random.uniform(0.5, 3.0))
        self.redis.start()

    def pause_broker(self) -> None:
        self.redis.pause()
        try:
            time.sleep(self.random.uniform(0.5, 4.0))
        finally:
            self.redis.resume()

    def kill_worker(self) -> None:
        self.random.choice(self.workers).kill()

    def kill_relay(self) -> None:
        self.relays[0].kill()

    def emit_wave(self, wave: int, count: int) -> None:
        prefix = f"soak-{wave}"
        self.keys += [f"{prefix}-{index}" for index in range(count)]
        self.emitters.append(
            self.launcher.emitter(
                self.redis.url, count=count, key_prefix=prefix, per_transaction=5, effect=EFFECT, **KNOBS
            )
        )

    def chaos(self) -> None:
        faults: list[Callable[[], None]] = [self.kill_broker, self.pause_broker, self.kill_worker, self.kill_relay]
        sizes = [len(part) for part in split(self.options.jobs, WAVES)]
        started = time.monotonic()
        end = started + self.options.duration
        wave = 0
        while wave < len(sizes) or time.monotonic() < end:
            elapsed = time.monotonic() - started
            due = len(sizes) if elapsed >= self.options.duration else int(elapsed * WAVES / self.options.duration) + 1
            while wave < min(due, len(sizes)):
                self.emit_wave(wave, sizes[wave])
                wave += 1
            if time.monotonic() >= end:
                continue
            time.sleep(self.random.uniform(1.0, 4.0))  # chaos at random intervals
            if time.monotonic() < end:
                self.random.choice(faults)()
                self.events += 1
                self.supervise()

    def drain(self) -> float:
        """Emitters done, everything up: wait until every job is succeeded or dead; seconds taken."""
        from tests.helpers import wait_for

        for emitter in self.emitters:
            with contextlib.suppress(AssertionError):
                emitter.wait(timeout=60)
        if not self.redis.running:
            self.redis.start()
        self.supervise()
        began = time.monotonic()
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not self.unfinished(), timeout=self.options.drain, interval=1.0)
        return time.monotonic() - began

    # Outcome.

    def unfinished(self) -> int:
        from critical_path.models import Job

        finished = Job.objects.filter(
            idempotency_key__startswith="soak-", status__in=[Job.Status.SUCCEEDED, Job.Status.DEAD]
        ).count()
        return len(self.keys) - finished

    def outcome(self) -> dict[str, int]:
        from critical_path.models import Job
        from tests.faults.outcomes import runs_per_key

        statuses = dict(
            Job.objects.filter(idempotency_key__startswith="soak-").values_list("idempotency_key", "status")
        )
        effects, runs = runs_per_key("applied_once"), runs_per_key("applied_once.run")
        succeeded = [key for key in self.keys if statuses.get(key) == Job.Status.SUCCEEDED]
        dead = sum(statuses.get(key) == Job.Status.DEAD for key in self.keys)
        return {
            "emitted": len(statuses),
            "succeeded": len(succeeded),
            "dead": dead,
            "lost": len(self.keys) - len(succeeded) - dead + sum(effects.get(key, 0) == 0 for key in succeeded),
            "effects run more than once": sum(count > 1 for count in effects.values()),
            "raw runs > 1": sum(count > 1 for count in runs.values()),
        }

    def close(self) -> None:
        for process in self.launcher.processes:
            with contextlib.suppress(Exception):
                process.kill()
        self.redis.close()


def split(total: int, parts: int) -> list[range]:
    bounds = [total * part // parts for part in range(parts + 1)]
    return [range(bounds[part], bounds[part + 1]) for part in range(parts) if bounds[part + 1] > bounds[part]]


def run(options: argparse.Namespace) -> int:
    import psycopg

    prefix = f"critical_path_soak_{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_{alias}" for alias in ALIASES]
    os.environ.update(
        DATABASE_URL=options.database_url,
        CRITICAL_PATH_TEST_DB_PREFIX=prefix,
        CRITICAL_PATH_TEST_WORKER="1",  # settings name the databases "<prefix>_<alias>"
        DJANGO_SETTINGS_MODULE="tests.faults.settings",
    )
    directory = Path(tempfile.mkdtemp(prefix="critical-path-soak-"))
    created: list[str] = []
    soak = None
    keep = False
    try:
        with psycopg.connect(options.database_url, autocommit=True, connect_timeout=5) as server:
            for name in names:
                server.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
        soak = Soak(options, directory)
        soak.redis.start()
        os.environ["CELERY_BROKER_URL"] = soak.redis.url
        import django

        django.setup()
        for alias in ALIASES:
            soak.launcher.manage("migrate", "--database", alias, "--noinput")
        soak.workers = [soak.worker() for _ in range(WORKERS)]
        soak.relays = [soak.relay() for _ in range(RELAYS)]
        for worker in soak.workers:
            worker.wait_for_output(" ready.", timeout=60)

        began = time.monotonic()
        soak.chaos()
        drained = soak.drain()
        outcome = soak.outcome()
        print(
            ", ".join(f"{name} {value}" for name, value in outcome.items())
            + f", chaos events {soak.events} (jobs {options.jobs}, {options.duration:g} s of chaos, seed "
            f"{options.seed}, drained in {drained:.0f} s, {time.monotonic() - began:.0f} s in all)",
            flush=True,
        )
        keep = bool(outcome["lost"] or outcome["effects run more than once"] or outcome["emitted"] != options.jobs)
        if keep:
            print(f"logs kept in {directory}", file=sys.stderr)
        return 1 if keep else 0
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(number, signal.SIG_IGN)
        if soak is not None:
            soak.close()
        from django.db import connections

        with contextlib.suppress(Exception):
            connections.close_all()
        with psycopg.connect(options.database_url, autocommit=True, connect_timeout=5) as server:
            for name in created:
                server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    options = parse()

    def stop(signum: int, frame: Any) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    try:
        sys.exit(run(options))
    except (KeyboardInterrupt, Stop):
        print("soak interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
