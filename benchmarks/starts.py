"""When side effects start: from the commit that emitted them, and from the time they were due.

    python -m benchmarks.starts [--rate 30] [--duration 20] [--rounds 2] [--due-jobs 200] [--due-over 20]
                                [--concurrency 2] [--quick] [--out benchmarks/results]

One Celery worker (prefork, ``--concurrency`` processes) on the benchmark's
PostgreSQL database and redis-server; each side effect pushes the time its
first line ran to a Redis list, so what is measured ends where the user's code
begins.

  commit   signups at ``--rate`` per second for ``--duration`` seconds, each a
           transaction with three jobs; per job, from the moment its
           transaction committed (its first ``on_commit`` callback, in the
           emitting process) to its start, p50/p99: critical_path
           (``after_commit``, its dispatcher publishing in the emitting process)
           and Celery's ``delay_on_commit``, in alternating rounds
  due      ``--due-jobs`` jobs emitted with delays spread over ``--due-over``
           seconds (after 1 s; without timed hand-offs, after the relay's
           interval and 1 s, as a job due later than its next pass), and as
           many jobs whose first attempt fails (their retry is
           due after the backoff), and as many jobs of a side effect limited to
           10 per second emitted in one burst (most postponed, due when their
           token is), with ``relay_outbox`` running at its default
           interval: per job, from its ``available_at`` (its last due time) to
           its start, p50/p99 (of the rate-limited jobs, those postponed);
           once with the defaults and once with ``CRITICAL_PATH_TIMED_HANDOFF_WITHIN``
           = 0, where every such job waits for the relay to wake for it

``--quick`` runs tiny numbers, to check the benchmark works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.support import environment, percentile
from benchmarks.throughput import ROOT, celery_worker

FULL = {"rate": 30.0, "duration": 20.0, "rounds": 2, "due_jobs": 200, "due_over": 20.0}
QUICK = {"rate": 10.0, "duration": 2.0, "rounds": 1, "due_jobs": 10, "due_over": 3.0}


def starts_client() -> Any:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def collect(client: Any, expected: int, timeout: float, log: Path) -> dict[str, float]:
    """Wait for ``expected`` starts (polling against a deadline), then take them off the list."""
    deadline = time.monotonic() + timeout
    while client.llen("bench:starts") < expected:
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"only {client.llen('bench:starts')} of {expected} side effects started:\n{tail}")
        time.sleep(0.05)
    raw = client.lrange("bench:starts", 0, -1)
    client.delete("bench:starts")
    starts = {}
    for item in raw:
        key, started = item.decode().split()
        starts[key] = float(started)
    return starts


def summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"jobs": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    return {"jobs": len(values_ms), "p50_ms": percentile(values_ms, 0.5), "p99_ms": percentile(values_ms, 0.99)}


def commit_time(key: str, committed: dict[str, float]) -> None:
    at = time.time()
    for index in range(3):
        committed[f"{key}.{index}"] = at


def commit_to_start(rate: float, duration: float, rounds: int, concurrency: int, log: Path) -> dict[str, Any]:
    """Signups at ``rate`` per second, three jobs each, critical_path and ``delay_on_commit`` in turns."""
    from django.db import transaction

    from benchmarks.benchapp.effects import mark_start
    from benchmarks.benchapp.models import Signup
    from benchmarks.benchapp.tasks import mark_start_task
    from critical_path.publishing import dispatcher

    def critical_path(key: str) -> None:
        for index in range(3):
            mark_start.after_commit(f"{key}.{index}")

    def delay_on_commit(key: str) -> None:
        for index in range(3):
            mark_start_task.delay_on_commit(f"{key}.{index}")

    variants: dict[str, Callable[[str], None]] = {"critical_path": critical_path, "delay_on_commit": delay_on_commit}
    client = starts_client()
    delays: dict[str, list[float]] = {name: [] for name in variants}
    with celery_worker(concurrency, log, queue="bench,celery"):
        for round_ in range(rounds):
            for name, emit in variants.items() if round_ % 2 == 0 else reversed(list(variants.items())):
                committed: dict[str, float] = {}
                started = next_start = time.perf_counter()
                n = 0
                while (now := time.perf_counter()) - started < duration:
                    next_start += 1 / rate  # open loop: the schedule does not wait for slow requests
                    time.sleep(max(0.0, next_start - now))
                    key = f"{name}.{round_}.{n}"
                    with transaction.atomic():
                        # The first on_commit callback: the commit's time, before delay_on_commit's publishes
                        # (which run in the committing thread) or critical_path's hand-off.
                        transaction.on_commit(partial(commit_time, key, committed))
                        Signup.objects.create(email="ada@example.com")
                        emit(key)
                    n += 1
                for key, start in collect(client, len(committed), 120 + duration, log).items():
                    delays[name].append((start - committed[key]) * 1000)
        dispatcher.shutdown(timeout=30)
    client.close()
    return {name: summary(values) for name, values in delays.items()}


@contextlib.contextmanager
def relay_process(log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``relay_outbox`` at its default interval, stopped on exit."""
    command = [sys.executable, "-m", "django", "relay_outbox"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def due_to_start(jobs: int, over: float, concurrency: int, log: Path, timed_within: float | None) -> dict[str, Any]:
    """Delayed jobs and retries, with the relay running: from each one's due time to its start."""
    from django.db import transaction
    from django.test.utils import override_settings

    from benchmarks.benchapp.effects import fail_once_then_mark, mark_start, rate_limited_mark
    from critical_path.conf import settings
    from critical_path.models import Job
    from critical_path.publishing import dispatcher

    knobs = {} if timed_within is None else {"CRITICAL_PATH_TIMED_HANDOFF_WITHIN": timed_within}
    env = {} if timed_within is None else {"BENCH_TIMED_HANDOFF_WITHIN": str(timed_within)}
    client = starts_client()
    with contextlib.ExitStack() as stack:
        stack.enter_context(override_settings(**knobs))
        os.environ.update(env)  # the worker and the relay, started below, read it
        stack.callback(lambda: [os.environ.pop(name, None) for name in env])
        stack.enter_context(celery_worker(concurrency, log))
        stack.enter_context(relay_process(log, env))
        emitted = []
        # Without timed hand-offs, a delayed job is the relay's: due later than its next pass, as a job due
        # past TIMED_HANDOFF_WITHIN is, so that the relay has read it and wakes for it.
        lead = 1.0 if timed_within is None else settings.RELAY_INTERVAL + 1.0
        with transaction.atomic():  # a burst over the rate limit: most are postponed, and come back when due
            emitted += [rate_limited_mark.after_commit(f"l{n}") for n in range(jobs)]
        for n in range(jobs):
            with transaction.atomic():
                delay = timedelta(seconds=lead + random.uniform(0, over))
                emitted.append(mark_start.using(delay=delay).after_commit(f"d{n}"))
                emitted.append(fail_once_then_mark.after_commit(f"r{n}"))
            time.sleep(over / jobs / 2)  # the emits spread over about half the window
        starts = collect(client, 3 * jobs, 120 + 4 * over + lead + jobs / 10, log)
        dispatcher.shutdown(timeout=30)
    client.close()
    rows = Job.objects.filter(pk__in=[job.pk for job in emitted]).values_list("args", "available_at", "created_at")
    late: dict[str, list[float]] = {"delayed": [], "retry": [], "rate limited": []}
    kinds = {"d": "delayed", "r": "retry", "l": "rate limited"}
    for (key,), available_at, created_at in rows:  # available_at is the last due time: a retry's, a comeback's
        if key.startswith("l") and available_at <= created_at:
            continue  # took a token at once: never postponed
        late[kinds[key[0]]].append((starts[key] - available_at.timestamp()) * 1000)
    Job.objects.all().delete()
    return {kind: summary(values) for kind, values in late.items()}


def report(data: dict[str, Any]) -> str:
    meta = data["meta"]
    lines = [
        f"PostgreSQL {meta['postgres']}, Redis broker of its own, Python {meta['python']}, {meta['cpus']} CPUs; "
        f"Celery prefork worker, concurrency {meta['concurrency']}; a new user's settings.",
        "",
        f"Commit to start: {meta['rate']:g} signups/s (3 jobs each) for {meta['duration']:g} s per variant, "
        f"{meta['rounds']} round(s).",
        "",
        "| variant | jobs | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *(
            f"| {name} | {row['jobs']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
            for name, row in data["commit"].items()
        ),
        "",
        f"Due to start: {meta['due_jobs']} delayed jobs (delays spread over {meta['due_over']:g} s), as many "
        "retries, and as many jobs limited to 10/s emitted in one burst (those postponed counted), "
        "`relay_outbox` at its default interval.",
        "",
        "| hand-off | kind | jobs | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for mode, rows in data["due"].items():
        for kind, row in rows.items():
            lines.append(f"| {mode} | {kind} | {row['jobs']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, help="signups per second, 3 jobs each (default 30; quick: 10)")
    parser.add_argument("--duration", type=float, help="seconds of load per variant and round (default 20)")
    parser.add_argument("--rounds", type=int, help="rounds of the two variants, alternating (default 2)")
    parser.add_argument("--due-jobs", type=int, help="delayed jobs, and as many retries (default 200)")
    parser.add_argument("--due-over", type=float, help="seconds the delays spread over (default 20)")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's prefork processes")
    parser.add_argument("--quick", action="store_true", help="tiny numbers, to check it works (not a measurement)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    for name, value in (QUICK if options.quick else FULL).items():
        if getattr(options, name) is None:
            setattr(options, name, value)

    with environment("critical_path_bench_starts") as setup, tempfile.TemporaryDirectory() as folder:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        log = Path(folder) / "processes.log"
        data: dict[str, Any] = {
            "meta": {
                "postgres": setup.postgres,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "concurrency": options.concurrency,
                "rate": options.rate,
                "duration": options.duration,
                "rounds": options.rounds,
                "due_jobs": options.due_jobs,
                "due_over": options.due_over,
            },
            "commit": commit_to_start(options.rate, options.duration, options.rounds, options.concurrency, log),
        }
        print(f"commit to start: {data['commit']}", file=sys.stderr)
        data["due"] = {
            "timed (default)": due_to_start(options.due_jobs, options.due_over, options.concurrency, log, None),
            "relay wakes (TIMED_HANDOFF_WITHIN=0)": due_to_start(
                options.due_jobs, options.due_over, options.concurrency, log, 0.0
            ),
        }
        print(f"due to start: {data['due']}", file=sys.stderr)
        connection.close()
    table = report(data)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "starts.md").write_text(table + "\n")
    (options.out / "starts.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
