"""Critical-path latency of a signup transaction, with and without side effects, interleaved in rounds.

    python -m benchmarks.latency [--rounds 5] [--requests 1000] [--rate 200] [--variants ...]
                                 [--broker-down] [--down-rounds 5] [--down-requests 5] [--down-timeout 60]
                                 [--out benchmarks/results]

Variants (each: ``atomic()`` + one INSERT of a business row, then):
  floor           nothing else
  raw_floor       three raw INSERTs (Django's cursor, critical_path's own INSERT statement) into a copy
                  of the outbox's table (its columns, defaults and indexes): what the database alone charges
                  for writing three jobs, the floor under critical_path's variants
  inline          the three side effects done in the request (sleeps of 20, 30 and 10 ms: email, CRM, stats)
  critical_path   three ``after_commit`` calls (the dispatcher publishes in the same process)
  critical_path_batch  the same three inside ``critical_path.batch()``: one INSERT for the three
  delay_on_commit three Celery ``delay_on_commit`` calls (no outbox), for comparison
  procrastinate   three procrastinate ``defer`` calls in the transaction (if procrastinate is installed)
  django_tasks    three django-tasks ``enqueue`` calls, database backend (if django-tasks-db is installed)
  floor_observed  floor inside a request span, metrics and tracing on
  critical_path_observed  critical_path inside a request span, metrics and tracing on: every job stores the
                  trace context, the dispatcher records a publish span per job, counters count

Metrics and tracing are off in the other variants (see ``benchmarks.support.Observability``);
``critical_path_observed - critical_path - (floor_observed - floor)`` is what observing costs
critical_path's part of a request, the request span's own cost taken out.

With ``--broker-down``, after the rounds above the benchmark's own redis-server
is stopped (SIGSTOP) and floor, critical_path and critical_path_batch run again
in rounds, then ``--down-requests`` delay_on_commit requests one by one (each
waited on for at most ``--down-timeout`` seconds, recording how long it blocked
and what it raised); then the server is killed (SIGKILL) and the same again.

PostgreSQL comes from BENCH_DATABASE_URL (default: the local server; a database
``critical_path_bench`` is created and dropped). The broker is a redis-server of
its own on a free port, unless BENCH_BROKER_URL names one (not with --broker-down).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.support import Observability, environment, percentile

VARIANTS = (
    "floor",
    "raw_floor",
    "inline",
    "critical_path",
    "critical_path_batch",
    "delay_on_commit",
    "procrastinate",
    "django_tasks",
    "floor_observed",
    "critical_path_observed",
)
#: The copy of the outbox's table the raw_floor variant writes to.
RAW_TABLE = "bench_raw_outbox"
#: Compared with raw_floor below the table: what writes jobs in the transaction.
OVER_RAW_FLOOR = (
    "critical_path", "critical_path_batch", "delay_on_commit", "procrastinate", "django_tasks",
    "critical_path_observed",
)  # fmt: skip
#: What runs again with the broker down: the outbox's variants, and the floor to compare with.
DOWN_VARIANTS = ("floor", "critical_path", "critical_path_batch")
#: Broker phases: up, then stopped (SIGSTOP: a hung broker), then killed (SIGKILL: connections refused).
PHASES = {"up": "up", "stopped": "stopped (SIGSTOP)", "killed": "killed (SIGKILL)"}
#: critical_path's p99 with the broker down must stay within this factor of its p99 with the broker up.
DOWN_P99_LIMIT = 1.1


class Samples:
    """Latencies (seconds) and failures of each variant in one broker phase."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.failures: dict[str, list[str]] = {}

    def record(self, name: str, function: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            function()
        except Exception as exc:  # a failed request is counted, not fatal
            self.failures.setdefault(name, []).append(describe(exc))
            return
        self.latencies.setdefault(name, []).append(time.perf_counter() - started)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


def raw_insert() -> tuple[str, list[Any]]:
    """The outbox's INSERT of one job, aimed at a copy of its table (made if missing), and its parameters.

    All but the last, the job's UUID, which each row needs new (``critical_path.models.new_uuid``).
    """
    from datetime import timedelta

    from django.db import connection

    from critical_path.models import Job
    from critical_path.store.insert import insert_sql

    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {quote(RAW_TABLE)} (LIKE {quote(Job._meta.db_table)} INCLUDING ALL)"
        )
    sql = insert_sql(connection).replace(quote(Job._meta.db_table), quote(RAW_TABLE), 1)
    # effect, version, args, kwargs, key, max_attempts, queue, priority, correlation id, trace context,
    # coalesce key, delay, ordering key (then the UUID)
    params = ["benchmarks.benchapp.effects.sync_crm", 1, "[1]", "{}", None, 5, "bench", 5, "req-1", "", None]
    return sql, [*params, timedelta(0), None]


def variants(observability: Observability) -> dict[str, Callable[[], None]]:
    """The request of each variant, peers only where their packages are installed."""
    from django.db import connection, transaction

    from benchmarks import peers
    from benchmarks.benchapp.effects import celery_side_effect, recompute_stats, send_welcome_email, sync_crm
    from benchmarks.benchapp.models import Signup
    from critical_path import batch
    from critical_path.models import new_uuid

    def floor() -> None:
        with transaction.atomic():
            Signup.objects.create(email="ada@example.com")

    insert, params = raw_insert()

    def raw_floor() -> None:
        with transaction.atomic():
            Signup.objects.create(email="ada@example.com")
            with connection.cursor() as cursor:
                for _ in range(3):
                    cursor.execute(insert, [*params, new_uuid()])
                    cursor.fetchone()

    def inline() -> None:
        with transaction.atomic():
            Signup.objects.create(email="ada@example.com")
            time.sleep(0.020)  # the welcome email
            time.sleep(0.030)  # the CRM
            time.sleep(0.010)  # the stats

    def critical_path() -> None:
        with transaction.atomic():
            signup = Signup.objects.create(email="ada@example.com")
            send_welcome_email.after_commit(signup.pk)
            sync_crm.after_commit(signup.pk)
            recompute_stats.after_commit()

    def critical_path_batch() -> None:
        with transaction.atomic():
            signup = Signup.objects.create(email="ada@example.com")
            with batch():
                send_welcome_email.after_commit(signup.pk)
                sync_crm.after_commit(signup.pk)
                recompute_stats.after_commit()

    def delay_on_commit() -> None:
        with transaction.atomic():
            signup = Signup.objects.create(email="ada@example.com")
            celery_side_effect.delay_on_commit("send_welcome_email", signup.pk)
            celery_side_effect.delay_on_commit("sync_crm", signup.pk)
            celery_side_effect.delay_on_commit("recompute_stats")

    def observed(function: Callable[[], None]) -> Callable[[], None]:
        def in_a_request_span() -> None:
            with observability.span("POST /signup"):
                function()

        return in_a_request_span

    return {
        "floor": floor,
        "raw_floor": raw_floor,
        "inline": inline,
        "critical_path": critical_path,
        "critical_path_batch": critical_path_batch,
        "delay_on_commit": delay_on_commit,
        **peers.variants(),
        "floor_observed": observed(floor),
        "critical_path_observed": observed(critical_path),
    }


def rounds(
    functions: dict[str, Callable[[], None]],
    names: list[str],
    count: int,
    requests: int,
    rate: float,
    label: str,
    observability: Observability,
) -> Samples:
    """``count`` rounds of ``requests`` requests per variant, the order rotating from round to round."""
    from critical_path.publishing import dispatcher as dispatch

    samples = Samples()
    for round_ in range(count):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            function = functions[name]
            observability.switch(name.endswith("_observed"))
            next_start = time.perf_counter()
            for _ in range(requests):
                if rate:  # open loop: requests arrive on a schedule, leaving the process idle in between
                    next_start += 1 / rate
                    time.sleep(max(0.0, next_start - time.perf_counter()))
                samples.record(name, function)
            dispatch.shutdown(timeout=30)  # let the dispatcher catch up (or give up) between variants
        print(f"broker {label}: round {round_ + 1}/{count} done", file=sys.stderr)
    return samples


class Blocking:
    """delay_on_commit requests with the broker down, each in a thread so a hung one cannot hang the benchmark."""

    def __init__(self, function: Callable[[], None]) -> None:
        self.function = function
        self.records: list[dict[str, Any]] = []
        self.threads: list[tuple[threading.Thread, dict[str, Any]]] = []

    def run(self, phase: str, requests: int, timeout: float) -> None:
        from benchmarks.benchapp.models import Signup

        for _ in range(requests):
            before = Signup.objects.count()
            record: dict[str, Any] = {"phase": phase, "outcome": "blocked", "error": "", "seconds": None}
            started = time.perf_counter()

            def request(record: dict[str, Any] = record, started: float = started) -> None:
                from django.db import connections

                try:
                    self.function()
                    record["outcome"] = "returned"
                except Exception as exc:
                    record["outcome"], record["error"] = "raised", describe(exc)
                finally:
                    record["seconds"] = time.perf_counter() - started
                    connections.close_all()

            thread = threading.Thread(target=request, daemon=True)
            thread.start()
            thread.join(timeout)
            if thread.is_alive():
                record["blocked_at_least_s"] = timeout
                self.threads.append((thread, record))
            # The business row commits before Celery's on-commit callback publishes: a failed publish loses
            # the task, not the row.
            record["row_committed"] = Signup.objects.count() > before
            self.records.append(record)
            print(f"delay_on_commit, broker {phase}: {record}", file=sys.stderr)

    def settle(self, timeout: float) -> None:
        """Wait (bounded) for requests still blocked, so their eventual outcome is recorded too."""
        deadline = time.monotonic() + timeout
        for thread, _ in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def run(options: argparse.Namespace, redis: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from benchmarks import peers

    call_command("migrate", verbosity=0)
    peers.prepare()
    observability = Observability()
    functions = variants(observability)
    names = [name for name in options.variants if name in functions]
    for name in names:  # warm up connections, producer pools, caches
        observability.switch(name.endswith("_observed"))
        for _ in range(min(100, options.requests)):
            functions[name]()
    phases = {"up": rounds(functions, names, options.rounds, options.requests, options.rate, "up", observability)}
    observability.switch(False)
    blocking = Blocking(functions["delay_on_commit"])
    if options.broker_down:
        assert redis is not None
        down = [name for name in DOWN_VARIANTS if name in names]
        for phase, sig in (("stopped", signal.SIGSTOP), ("killed", signal.SIGKILL)):
            redis.send_signal(sig)
            if sig == signal.SIGKILL:
                redis.wait()
            phases[phase] = rounds(
                functions, down, options.down_rounds, options.requests, options.rate, phase, observability
            )
            if "delay_on_commit" in names:
                blocking.run(phase, options.down_requests, options.down_timeout)
        blocking.settle(options.down_timeout)
    observability.close()
    connection.close()
    return {"phases": phases, "delay_on_commit_down": blocking.records, "variants": names}


def report(result: dict[str, Any], meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    phases: dict[str, Samples] = result["phases"]
    up_p99: dict[str, float] = {}
    data: dict[str, Any] = {"meta": meta, "phases": {}, "delay_on_commit_down": result["delay_on_commit_down"]}
    rows = []
    for phase, samples in phases.items():
        floor = samples.latencies.get("floor")
        floor_p50 = percentile(floor, 0.5) if floor else None
        data["phases"][phase] = {}
        for name in result["variants"]:
            values = samples.latencies.get(name, [])
            failures = samples.failures.get(name, [])
            if not values and not failures:
                continue
            entry: dict[str, Any] = {"n": len(values) + len(failures), "failed": len(failures)}
            entry["errors"] = sorted(set(failures))
            cells = ["-"] * 5
            if values:
                p50, p90, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.9, 0.99))
                entry.update(p50_ms=p50, p90_ms=p90, p99_ms=p99)
                cells[:3] = [f"{p50:.3f}", f"{p90:.3f}", f"{p99:.3f}"]
                if floor_p50:
                    entry["ratio"] = p50 / (floor_p50 * 1000)
                    cells[3] = f"{entry['ratio']:.2f}x"
                if phase == "up":
                    up_p99[name] = p99
                elif name in up_p99:
                    entry["p99_vs_up"] = p99 / up_p99[name]
                    cells[4] = f"{entry['p99_vs_up']:.2f}x"
            data["phases"][phase][name] = entry
            rows.append(f"| {name} | {PHASES[phase]} | {entry['n']} | {entry['failed']} | " + " | ".join(cells) + " |")
    lines = [
        f"PostgreSQL {meta['postgres']}, Redis broker, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"{meta['rounds']} rounds x {meta['requests']} requests per variant, interleaved, "
        f"requests per second: {meta['rate']}.",
        "",
        "| variant | broker | requests | failed | p50 ms | p90 ms | p99 ms | p50 / floor p50 | p99 / broker-up p99 |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    checks = []
    for phase in ("stopped", "killed"):
        for name in ("critical_path", "critical_path_batch"):
            entry = data["phases"].get(phase, {}).get(name)
            if entry and "p99_vs_up" in entry:
                ok = entry["p99_vs_up"] <= DOWN_P99_LIMIT and entry["failed"] == 0
                checks.append(
                    f"- {name}, broker {PHASES[phase]}: p99 {entry['p99_vs_up']:.2f}x its broker-up p99, "
                    f"{entry['failed']} failed: {'within' if ok else 'NOT within'} {DOWN_P99_LIMIT}x and no failure."
                )
    if checks:
        lines += ["", *checks]
    lines += over_raw_floor(data)
    up = data["phases"].get("up", {})
    if all(
        name in up and "p50_ms" in up[name]
        for name in ("floor", "floor_observed", "critical_path", "critical_path_observed")
    ):
        # What observing costs critical_path's part of a request: the request span's own cost taken out.
        span = up["floor_observed"]["p50_ms"] - up["floor"]["p50_ms"]
        observing = (up["critical_path_observed"]["p50_ms"] - up["critical_path"]["p50_ms"] - span) * 1000
        data["observing_critical_path_us"] = observing
        lines += [
            "",
            "Metrics and tracing on critical_path's part of a request (p50, net of the request span): "
            f"{observing:+.0f} µs.",
        ]
    if result["delay_on_commit_down"]:
        lines += [
            "",
            "delay_on_commit with the broker down, request by request:",
            "",
            "| broker | outcome | blocked s | raised | business row committed |",
            "|---|---|---|---|---|",
        ]
        for record in result["delay_on_commit_down"]:
            seconds = f"{record['seconds']:.2f}" if record["seconds"] is not None else "-"
            if "blocked_at_least_s" in record:
                seconds = f">= {record['blocked_at_least_s']:.0f} (then {seconds})"
            lines.append(
                f"| {PHASES[record['phase']]} | {record['outcome']} | {seconds} | {record['error'] or '-'} | "
                f"{'yes' if record['row_committed'] else 'no'} |"
            )
    return "\n".join(lines), data


def over_raw_floor(data: dict[str, Any]) -> list[str]:
    """What writing the jobs costs above the database's own cost of three INSERTs (raw_floor), broker up."""
    up = data["phases"].get("up", {})
    raw = up.get("raw_floor")
    if not raw or "p50_ms" not in raw:
        return []
    rows = []
    for name in OVER_RAW_FLOOR:
        entry = up.get(name)
        if entry and "p50_ms" in entry:
            entry["p50_vs_raw_floor"] = entry["p50_ms"] / raw["p50_ms"]
            entry["p99_vs_raw_floor"] = entry["p99_ms"] / raw["p99_ms"]
            rows.append(f"| {name} | {entry['p50_vs_raw_floor']:.2f}x | {entry['p99_vs_raw_floor']:.2f}x |")
    return [
        "",
        f"Against raw_floor (the same transaction and three raw INSERTs into a copy of the outbox's table: "
        f"p50 {raw['p50_ms']:.3f} ms, p99 {raw['p99_ms']:.3f} ms), broker up:",
        "",
        "| variant | p50 / raw_floor p50 | p99 / raw_floor p99 |",
        "|---|---|---|",
        *rows,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000, help="requests per variant per round")
    parser.add_argument(
        "--rate", type=float, default=0, help="requests per second (open loop); 0: back to back, saturating a core"
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--broker-down", action="store_true", help="then run again with the broker stopped, killed")
    parser.add_argument("--down-rounds", type=int, help="rounds with the broker down (default: --rounds)")
    parser.add_argument("--down-requests", type=int, default=5, help="delay_on_commit requests per broker-down phase")
    parser.add_argument("--down-timeout", type=float, default=60, help="seconds to wait on one blocked request")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    if options.down_rounds is None:
        options.down_rounds = options.rounds
    if options.broker_down and "BENCH_BROKER_URL" in os.environ:
        parser.error("--broker-down stops and kills the broker: unset BENCH_BROKER_URL, it starts its own")

    with environment("critical_path_bench") as setup:
        result = run(options, setup.redis)
    meta = {
        "postgres": setup.postgres,
        "python": platform.python_version(),
        "rounds": options.rounds,
        "requests": options.requests,
        "cpus": os.cpu_count(),
        "rate": options.rate or "back to back",
        "broker_down": options.broker_down,
        "down_rounds": options.down_rounds,
        "down_requests": options.down_requests,
        "down_timeout_s": options.down_timeout,
    }
    table, data = report(result, meta)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "latency.md").write_text(table + "\n")
    (options.out / "latency.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
