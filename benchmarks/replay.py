"""Replaying dead letters in bulk: ``replay_dead_letters --yes`` on 100,000 dead jobs, jobs/s and peak memory.

    python -m benchmarks.replay [--jobs 100000] [--batch-size 500]

Fills a fresh PostgreSQL database with ``--jobs`` dead jobs, then times the
command without throttle (selection, COUNT, every batch's transaction). The
dispatcher publishes the replayed jobs to a redis-server of the benchmark's own
while the command runs; its queue holds ``CRITICAL_PATH_DISPATCHER_QUEUE_SIZE``
ids and leaves the rest to the relay, as in production. Peak memory is the
process's maximum resident set (``getrusage``) and the peak of Python
allocations during the command (``tracemalloc``, which slows it down: timed in
a separate run).
"""

from __future__ import annotations

import argparse
import io
import platform
import resource
import time
import tracemalloc

from benchmarks.support import environment

DEAD = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, queue, priority, republished,
    correlation_id, last_error, error_history, created_at, available_at, started_at, finished_at)
SELECT 'benchmarks.benchapp.effects.sync_crm', jsonb_build_array(n), '{}'::jsonb, 'dead', 5, 5, 'bench', 0, 0,
    md5(n::text), 'ConnectionError: CRM down', '[]'::jsonb, now() - interval '1 day', now() - interval '1 day',
    now() - interval '1 day', now() - interval '1 day'
FROM generate_series(1, %s) AS n
"""


def fill(jobs: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE critical_path_job")
        cursor.execute(DEAD, [jobs])
        cursor.execute("VACUUM ANALYZE critical_path_job")


def replay(batch_size: int) -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("replay_dead_letters", "--yes", "--batch-size", str(batch_size), stdout=io.StringIO())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    options = parser.parse_args()
    with environment("critical_path_bench_replay") as setup:
        version = setup.postgres
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from critical_path.publishing import dispatcher as dispatch

        call_command("migrate", verbosity=0)
        fill(options.jobs)
        seconds = replay(options.batch_size)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        dispatch.shutdown(timeout=120)
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, count(*) FROM critical_path_job GROUP BY status ORDER BY status")
            states = dict(cursor.fetchall())
        fill(options.jobs)
        tracemalloc.start()
        replay(options.batch_size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        dispatch.shutdown(timeout=120)
        print(f"PostgreSQL {version}, Python {platform.python_version()}, {platform.machine()}")
        print(f"replay_dead_letters --yes --batch-size {options.batch_size}: {options.jobs} dead jobs")
        print(f"  {seconds:.2f} s, {options.jobs / seconds:,.0f} jobs/s")
        print(f"  peak RSS {rss_mb:.0f} MB (whole process), peak Python allocations {peak / 2**20:.1f} MB")
        print(f"  statuses afterwards: {states}")


if __name__ == "__main__":
    main()
