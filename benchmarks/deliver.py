"""The worker's cost of one job, ``delivery.deliver`` in-process, with metrics and tracing off and on.

    python -m benchmarks.deliver [--rounds 5] [--jobs 500] [--out benchmarks/results]

Each round, each variant emits ``--jobs`` jobs of a side effect that does
nothing (not timed; ``observed`` emits them inside a request span, so they carry
a trace context), waits for the dispatcher to publish them, then times
``deliver`` of each: the claim UPDATE, reading the job, running it, the outcome
UPDATE, plus, observed, the process, claim and run spans (an SDK tracer
provider, ``BatchSpanProcessor``, an exporter that drops them) and the
counters and histograms. The variants alternate within each round. Same
PostgreSQL and Redis set-up as ``benchmarks.latency`` (database
``critical_path_bench_deliver``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from benchmarks.support import Observability, environment, percentile

VARIANTS = ("plain", "observed")


def run(rounds: int, jobs: int) -> dict[str, list[float]]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from benchmarks.benchapp.effects import recompute_stats
    from critical_path import delivery, dispatch

    call_command("migrate", verbosity=0)
    observability = Observability()
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}

    def emit(count: int) -> list[int]:
        with transaction.atomic():
            ids = [recompute_stats.after_commit().pk for _ in range(count)]
        dispatch.shutdown(timeout=30)  # published before the timing starts
        return ids

    def batch(name: str, count: int, timed: bool) -> None:
        observed = name == "observed"
        observability.switch(observed)
        if observed:
            with observability.span("POST /signup"):
                ids = emit(count)
        else:
            ids = emit(count)
        for job_id in ids:
            started = time.perf_counter()
            outcome = delivery.deliver(job_id, "default")
            if timed:
                samples[name].append(time.perf_counter() - started)
            assert outcome == delivery.Outcome.SUCCEEDED, outcome

    for name in VARIANTS:  # warm up connections, caches, the tracer
        batch(name, 100, timed=False)
    for round_ in range(rounds):
        for name in VARIANTS[round_ % 2 :] + VARIANTS[: round_ % 2]:
            batch(name, jobs, timed=True)
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    observability.close()
    connection.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()

    with environment("critical_path_bench_deliver") as postgres_version:
        samples = run(options.rounds, options.jobs)
    rows, data = [], {"meta": {"postgres": postgres_version, "python": platform.python_version()}, "variants": {}}
    for name in VARIANTS:
        p50, p90, p99 = (percentile(samples[name], q) * 1e6 for q in (0.5, 0.9, 0.99))
        rows.append(f"| {name} | {p50:.0f} | {p90:.0f} | {p99:.0f} |")
        data["variants"][name] = {"n": len(samples[name]), "p50_us": p50, "p90_us": p90, "p99_us": p99}  # type: ignore[index]
    added = (statistics.median(samples["observed"]) - statistics.median(samples["plain"])) * 1e6
    table = "\n".join(
        [
            f"PostgreSQL {postgres_version}, Python {platform.python_version()}, {options.rounds} rounds x "
            f"{options.jobs} jobs per variant, interleaved.",
            "",
            "| deliver | p50 µs | p90 µs | p99 µs |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Metrics and tracing add {added:.0f} µs to a job's delivery (p50).",
        ]
    )
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "deliver.md").write_text(table + "\n")
    (options.out / "deliver.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
