"""The admin dashboard's render time on a big table: 1,000,000 finished jobs and 10,000 failed or dead.

    python -m benchmarks.dashboard [--finished 1000000] [--broken 10000] [--repeat 20]

The finished jobs succeeded over the last 24 hours (about 42,000 in the last
hour, so the timings read their 10,000-row cap); half the broken ones are
failed, half dead. Reports the median and the slowest of ``--repeat`` renders
of the whole page (the admin view, every query, the template), after a warm-up,
and the time of ``dashboard.figures`` alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.support import environment

FILL = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, queue, priority, republished,
    correlation_id, last_error, error_history, created_at, available_at, enqueued_at, started_at, finished_at)
SELECT 'benchmarks.effects.e' || (n %% 5), jsonb_build_array(n), '{}'::jsonb, 'succeeded', 1, 5, 'bench', 0, 0,
    md5(n::text), '', '[]'::jsonb, t - interval '2 seconds', t - interval '2 seconds', t - interval '1 second',
    t - interval '500 milliseconds', t
FROM (SELECT n, now() - (n * interval '1 day') / %s AS t FROM generate_series(1, %s) AS n) AS rows
"""

BROKEN = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, queue, priority, republished,
    correlation_id, last_error, error_history, created_at, available_at, started_at, finished_at)
SELECT 'benchmarks.effects.e' || (n %% 5), jsonb_build_array(n), '{}'::jsonb,
    CASE WHEN n %% 2 = 0 THEN 'failed' ELSE 'dead' END, 3, 5, 'bench', 0, 0, md5(n::text),
    'ConnectionError: down', '[]'::jsonb, now() - interval '2 hours', now() + interval '5 minutes',
    now() - (n * interval '1 hour') / %s, CASE WHEN n %% 2 = 0 THEN NULL ELSE now() - (n * interval '1 hour') / %s END
FROM generate_series(1, %s) AS n
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--broken", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    with environment("bench_dashboard") as setup:
        version = setup.postgres
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment

        from critical_path.operations import dashboard

        setup_test_environment()
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(FILL, [options.finished, options.finished])
            cursor.execute(BROKEN, [options.broken, options.broken, options.broken])
            cursor.execute("VACUUM ANALYZE critical_path_job")
        fill = time.perf_counter() - started
        from django.contrib.auth.models import User

        client = Client()
        client.force_login(User.objects.create_superuser("bench", password="bench"))
        url = "/admin/critical_path/dashboard/"
        assert client.get(url).status_code == 200  # warm-up

        def timed(call: object) -> list[float]:
            times = []
            for _ in range(options.repeat):
                start = time.perf_counter()
                call()  # type: ignore[operator]
                times.append((time.perf_counter() - start) * 1000)
            return times

        page = timed(lambda: client.get(url))
        figures = timed(lambda: dashboard.figures("default"))
        result = {
            "postgresql": version,
            "finished": options.finished,
            "broken": options.broken,
            "fill_seconds": round(fill, 1),
            "page_ms": {"median": round(statistics.median(page), 1), "max": round(max(page), 1)},
            "figures_ms": {"median": round(statistics.median(figures), 1), "max": round(max(figures), 1)},
        }
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
