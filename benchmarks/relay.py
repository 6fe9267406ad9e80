"""The relay: passes stay cheap however many finished jobs the table holds, and how fast a pass publishes.

    python -m benchmarks.relay [--finished 10000 1000000] [--live 2000] [--repeat 5] [--out benchmarks/results]

For each table size (finished jobs: ``succeeded`` rows, as a table that is never
pruned holds), two timings, each the median of ``--repeat`` runs:

  idle pass   a pass with nothing to do (every relay query, no publish)
  busy pass   a pass publishing ``--live`` due jobs to Redis (rescue, publish, republish)

and the busy pass's throughput (jobs/s) at several batch sizes. The ratio of
the largest table's times to the smallest's is the cost of finished rows: the
relay's queries only touch the partial indexes on live statuses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchmarks.support import environment

FILL = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, queue, priority, republished,
    correlation_id, last_error, error_history, created_at, available_at, enqueued_at, started_at, finished_at)
SELECT 'benchmarks.benchapp.effects.sync_crm', jsonb_build_array(n), '{}'::jsonb, 'succeeded', 1, 5, 'bench', 0, 0,
    md5(n::text), '', '[]'::jsonb, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
    now() - interval '1 day', now() - interval '1 day'
FROM generate_series(1, %s) AS n
"""

LIVE = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, queue, priority, republished,
    correlation_id, last_error, error_history, created_at, available_at)
SELECT 'benchmarks.benchapp.effects.sync_crm', jsonb_build_array(n), '{}'::jsonb, 'pending', 0, 5, 'bench', 0, 0,
    md5(n::text), '', '[]'::jsonb, now() - interval '1 hour', now() - interval '1 hour'
FROM generate_series(1, %s) AS n
"""


def timed(function: object) -> float:
    started = time.perf_counter()
    function()  # type: ignore[operator]
    return time.perf_counter() - started


def run(sizes: list[int], live: int, repeat: int, batch_sizes: list[int]) -> dict[str, dict[str, float]]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from critical_path.publishing.publisher import Publisher
    from critical_path.relay import passes as relay

    call_command("migrate", verbosity=0)
    publisher = Publisher()
    results: dict[str, dict[str, float]] = {}
    finished = 0
    for size in sorted(sizes):
        with connection.cursor() as cursor:
            cursor.execute(FILL, [size - finished])
            cursor.execute("DELETE FROM critical_path_job WHERE status <> 'succeeded'")
            cursor.execute(LIVE, [live])
            cursor.execute("VACUUM ANALYZE critical_path_job")
        finished = size
        relay.run_once("default", publisher=publisher)  # warm up: connection, producer, plans
        row: dict[str, float] = {}
        for batch_size in batch_sizes:
            busy = []
            for _ in range(repeat):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "UPDATE critical_path_job SET status = 'pending', enqueued_at = NULL WHERE status = 'enqueued'"
                    )
                busy.append(timed(lambda: relay.run_once("default", publisher=publisher, batch_size=batch_size)))  # noqa: B023
                _purge_broker()
            row[f"busy_s_batch_{batch_size}"] = statistics.median(busy)
            row[f"jobs_per_s_batch_{batch_size}"] = live / statistics.median(busy)
        idle = [timed(lambda: relay.run_once("default", publisher=publisher)) for _ in range(repeat * 4)]
        row["idle_ms"] = statistics.median(idle) * 1000
        results[str(size)] = row
        print(f"{size} finished rows: {row}", file=sys.stderr)
    publisher.release()
    connection.close()
    return results


def _purge_broker() -> None:
    from celery import current_app

    with current_app.connection_for_write() as connection:
        connection.default_channel.queue_purge("bench")


def report(results: dict[str, dict[str, float]], meta: dict[str, object], batch_sizes: list[int]) -> str:
    sizes = sorted(results, key=int)
    small, large = results[sizes[0]], results[sizes[-1]]
    main = batch_sizes[len(batch_sizes) // 2]
    header = "| finished rows | idle pass ms | " + " | ".join(f"busy pass s (batch {b})" for b in batch_sizes)
    header += " | " + " | ".join(f"jobs/s (batch {b})" for b in batch_sizes) + " |"
    lines = [
        f"PostgreSQL {meta['postgres']}, Redis broker of its own, Python {meta['python']}, {meta['cpus']} CPUs; "
        f"{meta['live']} due jobs per busy pass; medians of {meta['repeat']} runs.",
        "",
        header,
        "|---" * (2 + 2 * len(batch_sizes)) + "|",
    ]
    for size in sizes:
        row = results[size]
        busy = " | ".join(f"{row[f'busy_s_batch_{b}']:.3f}" for b in batch_sizes)
        rate = " | ".join(f"{row[f'jobs_per_s_batch_{b}']:.0f}" for b in batch_sizes)
        lines.append(f"| {int(size):,} | {row['idle_ms']:.2f} | {busy} | {rate} |")
    lines += [
        "",
        f"{int(sizes[-1]):,} vs {int(sizes[0]):,} finished rows: idle pass x{large['idle_ms'] / small['idle_ms']:.2f}, "
        f"busy pass (batch {main}) x{large[f'busy_s_batch_{main}'] / small[f'busy_s_batch_{main}']:.2f}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finished", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--live", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    with environment("critical_path_bench_relay") as setup:
        postgres_version = setup.postgres
        results = run(options.finished, options.live, options.repeat, options.batch_sizes)
    meta = {
        "postgres": postgres_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "live": options.live,
        "repeat": options.repeat,
    }
    table = report(results, meta, options.batch_sizes)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "relay.md").write_text(table + "\n")
    (options.out / "relay.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
