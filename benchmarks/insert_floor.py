"""What the database alone charges for writing jobs in a transaction: the lower bound under ``benchmarks.latency``.

    python -m benchmarks.insert_floor [--rounds 3] [--requests 2000] [--out benchmarks/results]

Raw psycopg on one connection, no Django, no dispatcher, no Python around the
statements: each request is ``BEGIN``, the signup's INSERT, then

  floor          nothing else
  three          the outbox's INSERT three times (prepared, server-side binding)
  pipelined      the same three INSERTs and the COMMIT sent in one psycopg pipeline
  one_statement  one three-row INSERT (what ``critical_path.batch()`` writes)

and ``COMMIT``. The INSERT is critical_path's own (``store.insert.insert_sql``). No
code in the request path can do better than these ratios on the same machine:
whatever ``after_commit()`` costs above ``three`` is critical_path's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.support import environment, percentile

SIGNUP = "INSERT INTO benchapp_signup (email, created_at) VALUES (%s, STATEMENT_TIMESTAMP()) RETURNING id"


def requests(
    connection: Any, insert: str, insert3: str, params: Callable[[], list[Any]]
) -> dict[str, Callable[[], None]]:
    """The variants; ``params()`` is one job's parameters, each with a new UUID as the emit makes them."""

    def signup() -> None:
        connection.execute(SIGNUP, ["ada@example.com"]).fetchone()

    def floor() -> None:
        with connection.transaction():
            signup()

    def three() -> None:
        with connection.transaction():
            signup()
            for _ in range(3):
                connection.execute(insert, params(), prepare=True).fetchone()

    def pipelined() -> None:
        connection.execute("BEGIN")
        signup()
        with connection.pipeline():
            for _ in range(3):
                connection.execute(insert, params(), prepare=True)
            connection.execute("COMMIT")

    def one_statement() -> None:
        with connection.transaction():
            signup()
            connection.execute(insert3, params() + params() + params(), prepare=True).fetchall()

    return {"floor": floor, "three": three, "pipelined": pipelined, "one_statement": one_statement}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant per round")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()

    with environment("critical_path_insert_floor") as setup:
        import django

        django.setup()
        import psycopg
        from django.core.management import call_command
        from django.db import connection as django_connection

        from critical_path.models import new_uuid
        from critical_path.store.insert import insert_sql

        call_command("migrate", verbosity=0)
        insert, insert3 = insert_sql(django_connection), insert_sql(django_connection, 3)
        django_connection.close()
        # effect, version, args, kwargs, key, max_attempts, queue, priority, correlation id, trace context,
        # coalesce key, delay, ordering key, UUID
        fixed = ["benchmarks.benchapp.effects.sync_crm", 1, "[1]", "{}", None, 5, "bench", 5, "req-1", "", None]
        fixed += [timedelta(0), None]

        def params() -> list[Any]:
            return [*fixed, new_uuid()]

        latencies: dict[str, list[float]] = {}
        with psycopg.connect(os.environ["BENCH_DATABASE_URL"]) as connection:
            functions = requests(connection, insert, insert3, params)
            for function in functions.values():  # warm up, and let the statements be prepared
                for _ in range(min(200, options.requests)):
                    function()
            for round_ in range(options.rounds):
                names = list(functions)
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    function = functions[name]
                    for _ in range(options.requests):
                        started = time.perf_counter()
                        function()
                        latencies.setdefault(name, []).append(time.perf_counter() - started)
    floor = percentile(latencies["floor"], 0.5)
    data: dict[str, Any] = {
        "meta": {"postgres": setup.postgres, "python": platform.python_version(), "cpus": os.cpu_count()},
        "variants": {},
    }
    lines = [
        f"PostgreSQL {setup.postgres}, raw psycopg, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{options.rounds} rounds x {options.requests} requests per variant, interleaved.",
        "",
        "| variant | p50 ms | p99 ms | p50 / floor p50 |",
        "|---|---|---|---|",
    ]
    for name, values in latencies.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        data["variants"][name] = {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "ratio": p50 / floor}
        lines.append(f"| {name} | {p50 * 1000:.3f} | {p99 * 1000:.3f} | {p50 / floor:.2f}x |")
    table = "\n".join(lines)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "insert_floor.md").write_text(table + "\n")
    (options.out / "insert_floor.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
