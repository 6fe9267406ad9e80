"""Critical-path latency of a signup transaction, with and without side effects, interleaved in rounds.

    python -m benchmarks.latency [--rounds 5] [--requests 1000] [--rate 200] [--out benchmarks/results]

Variants (each: ``atomic()`` + one INSERT of a business row, then):
  floor                   nothing else
  critical_path           three ``after_commit`` calls (the dispatcher publishes in the same process)
  critical_path_batch     the same three inside ``critical_path.batch()``: one INSERT for the three
  delay_on_commit         three Celery ``delay_on_commit`` calls (no outbox), for comparison
  floor_observed          floor inside a request span, metrics and tracing on
  critical_path_observed  critical_path inside a request span, metrics and tracing on: every job stores the
                          trace context, the dispatcher records a publish span per job, counters count

Metrics and tracing are off in the other variants (see ``benchmarks.support.Observability``).
``critical_path_observed - critical_path - (floor_observed - floor)`` is what observing costs
critical_path's part of a request, the request span's own cost taken out.

PostgreSQL comes from BENCH_DATABASE_URL (default: the local server; a database
``critical_path_bench`` is created and dropped). The broker is a redis-server of
its own on a free port, unless BENCH_BROKER_URL names one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.support import Observability, environment, percentile

VARIANTS = (
    "floor",
    "critical_path",
    "critical_path_batch",
    "delay_on_commit",
    "floor_observed",
    "critical_path_observed",
)


def run(rounds: int, requests: int, rate: float) -> dict[str, list[float]]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from benchmarks.benchapp.effects import celery_side_effect, recompute_stats, send_welcome_email, sync_crm
    from benchmarks.benchapp.models import Signup
    from critical_path import batch, dispatch

    call_command("migrate", verbosity=0)

    def floor() -> None:
        with transaction.atomic():
            Signup.objects.create(email="ada@example.com")

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

    observability = Observability()

    def observed(function: Callable[[], None]) -> Callable[[], None]:
        def in_a_request_span() -> None:
            with observability.span("POST /signup"):
                function()

        return in_a_request_span

    functions = {
        "floor": floor,
        "critical_path": critical_path,
        "critical_path_batch": critical_path_batch,
        "delay_on_commit": delay_on_commit,
        "floor_observed": observed(floor),
        "critical_path_observed": observed(critical_path),
    }
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for name, function in functions.items():  # warm up connections, producer pools, caches
        observability.switch(name.endswith("_observed"))
        for _ in range(100):
            function()
    for round_ in range(rounds):
        order = VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]
        for name in order:
            function = functions[name]
            observability.switch(name.endswith("_observed"))
            next_start = time.perf_counter()
            for _ in range(requests):
                if rate:  # open loop: requests arrive on a schedule, leaving the process idle in between
                    next_start += 1 / rate
                    time.sleep(max(0.0, next_start - time.perf_counter()))
                started = time.perf_counter()
                function()
                samples[name].append(time.perf_counter() - started)
            dispatch.shutdown(timeout=30)  # let the dispatcher catch up between variants
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    observability.close()
    connection.close()
    return samples


def report(samples: dict[str, list[float]], meta: dict[str, object]) -> tuple[str, dict[str, object]]:
    floor_p50 = statistics.median(samples["floor"])
    rows = []
    data: dict[str, object] = {"meta": meta, "variants": {}}
    for name in VARIANTS:
        values = samples[name]
        p50, p90, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.9, 0.99))
        ratio = statistics.median(values) / floor_p50
        rows.append(f"| {name} | {p50:.3f} | {p90:.3f} | {p99:.3f} | {ratio:.2f}x |")
        data["variants"][name] = {"n": len(values), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "ratio": ratio}  # type: ignore[index]
    medians = {name: statistics.median(samples[name]) * 1e6 for name in VARIANTS}
    span = medians["floor_observed"] - medians["floor"]
    observing = medians["critical_path_observed"] - medians["critical_path"] - span
    data["observing_critical_path_us"] = observing
    table = "\n".join(
        [
            f"PostgreSQL {meta['postgres']}, Redis broker, Python {meta['python']}, {meta['rounds']} rounds x "
            f"{meta['requests']} requests per variant, interleaved, requests per second: {meta['rate']}.",
            "",
            "| variant | p50 ms | p90 ms | p99 ms | p50 / floor p50 |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Metrics and tracing add {observing:.1f} µs to critical_path's part of a request (p50; the request "
            f"span's own {span:.1f} µs taken out).",
        ]
    )
    return table, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=0, help="requests per second (open loop); 0: back to back, saturating a core"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()

    with environment("critical_path_bench") as postgres_version:
        samples = run(options.rounds, options.requests, options.rate)
    meta = {
        "postgres": postgres_version,
        "python": platform.python_version(),
        "rounds": options.rounds,
        "requests": options.requests,
        "cpus": os.cpu_count(),
        "rate": options.rate or "back to back",
    }
    table, data = report(samples, meta)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "latency.md").write_text(table + "\n")
    (options.out / "latency.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
