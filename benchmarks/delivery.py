"""What each side-effect option, and observing, costs ``deliver``: time per delivery, in process, on PostgreSQL.

    python -m benchmarks.delivery [--rounds 5] [--jobs 500]

Each variant delivers ``--jobs`` pending jobs whose side effect writes one
business row, through ``delivery.deliver`` (claim, run, succeed; no broker, no
worker): ``plain``; ``observed`` (the same with Prometheus metrics and
OpenTelemetry tracing on, the jobs carrying a trace context: the process, claim
and run spans go to an SDK tracer provider's ``BatchSpanProcessor`` and an
exporter that drops them); ``soft_time_limit`` (the limits passed as a worker
passes them); ``atomic`` (the write and the success UPDATE in one transaction);
``current version`` (a version-3 side effect, a version-3 job); ``upgraded 1→3``
(a version-1 job, two upgrades and a signature check); ``coalescing`` (each job
with a coalesce key of its own, so the claim's test for a newer equal job runs
and finds none); ``rate limited`` (``rate="1000/s"``, which one process delivering
in a loop never reaches: the limiter's UPDATE on every job, no postponement);
``ordered, 20 keys`` and ``ordered, 1 key`` (plain's jobs with ordering keys,
round robin over 20 keys or all on one: each claim looks for unfinished jobs
ahead in the key's line, behind which the rest of the batch waits). Metrics and
tracing are off in every variant but ``observed``. Variants run interleaved
in rounds, each round starting with the next one, so drift of the machine hits all alike. Prints the median and 95th
percentile per delivery, and each variant's median against ``plain``'s, then
the in-memory cost of the version step alone (``versions.upgraded``, timeit).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from benchmarks.support import Observability, environment, percentile

EFFECTS = "benchmarks.benchapp.effects."
#: name: (side effect, stored version, stored kwargs, deliver's keyword arguments, ordering keys)
VARIANTS = {
    "plain": ("record_signup", 1, {}, {}, 0),
    "observed": ("record_signup", 1, {}, {}, 0),
    "soft_time_limit": ("record_signup_with_soft_limit", 1, {}, {"time_limit": 30, "soft_time_limit": 20}, 0),
    "atomic": ("record_signup_atomically", 1, {}, {}, 0),
    "current version": ("record_signup_v3", 3, {"source": "web"}, {}, 0),
    "upgraded 1→3": ("record_signup_v3", 1, {}, {}, 0),
    "coalescing": ("record_signup_coalescing", 1, {}, {}, 0),
    "rate limited": ("record_signup_rate_limited", 1, {}, {}, 0),
    "ordered, 20 keys": ("record_signup", 1, {}, {}, 20),
    "ordered, 1 key": ("record_signup", 1, {}, {}, 1),
}

INSERT = """
INSERT INTO critical_path_job (effect, version, args, kwargs, status, attempts, max_attempts, queue, priority,
    republished, correlation_id, trace_context, last_error, error_history, created_at, available_at, coalesce_key,
    ordering_key)
SELECT %s, %s, jsonb_build_array('Ada' || n || '@example.com'), %s::jsonb, 'enqueued', 0, 5, 'bench', 0, 0, '',
    %s, '', '[]'::jsonb, now(), now(), CASE WHEN %s THEN md5(clock_timestamp()::text || n) END,
    CASE WHEN %s > 0 THEN 'account:' || n %% GREATEST(%s, 1) END
FROM generate_series(1, %s) AS n ORDER BY n
RETURNING id
"""


def fill(
    effect: str, version: int, kwargs: dict[str, str], jobs: int, keys: int = 0, trace_context: str = ""
) -> list[int]:
    import json

    from django.db import connection

    from critical_path.outbox import effects as side_effects

    coalesce = side_effects.resolve(EFFECTS + effect).coalesce
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT, [EFFECTS + effect, version, json.dumps(kwargs), trace_context, coalesce, keys, keys, jobs]
        )
        return sorted(row[0] for row in cursor.fetchall())  # id order: the order keyed jobs take their turns


def deliver_all(ids: list[int], options: dict[str, float]) -> list[float]:
    from critical_path.worker import delivery

    samples = []
    for job_id in ids:
        started = time.perf_counter()
        outcome = delivery.deliver(job_id, "default", **options)
        samples.append(time.perf_counter() - started)
        assert outcome == delivery.Outcome.SUCCEEDED, outcome
    return samples


def version_step() -> dict[str, float]:
    """Microseconds per ``versions.upgraded`` call: a job at the code's version, and one two upgrades behind."""
    import timeit

    from critical_path.models import Job
    from critical_path.outbox import effects as side_effects
    from critical_path.outbox import versions

    effect = side_effects.resolve(EFFECTS + "record_signup_v3")
    jobs = {
        "current version": Job(pk=1, version=3, args=["ada@example.com"], kwargs={"source": "web"}),
        "upgraded 1→3": Job(pk=1, version=1, args=["Ada@example.com"], kwargs={}),
    }
    return {
        name: min(timeit.repeat(lambda job=job: versions.upgraded(effect, job), number=10_000, repeat=5)) / 10_000
        for name, job in jobs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=500)
    options = parser.parse_args()
    with environment("critical_path_bench_delivery") as setup:
        version = setup.postgres
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from critical_path.observability import tracing

        call_command("migrate", verbosity=0)
        observability = Observability()
        with observability.span("POST /signup"):
            trace_context = tracing.current()  # what a job emitted in a traced request carries
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        names = list(VARIANTS)
        for round_ in range(options.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # each variant first once
                effect, stored, kwargs, deliver_options, keys = VARIANTS[name]
                observed = name == "observed"
                ids = fill(effect, stored, kwargs, options.jobs, keys, trace_context if observed else "")
                observability.switch(observed)
                samples[name] += deliver_all(ids, deliver_options)
        observability.switch(False)
        observability.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM benchapp_signup")
            [(rows,)] = cursor.fetchall()
        assert rows == options.rounds * options.jobs * len(VARIANTS), rows
        step = version_step()
        from critical_path.publishing import dispatcher

        dispatcher.shutdown(timeout=30)  # keyed successes handed off the next jobs: its connection goes too
    base = statistics.median(samples["plain"])
    print(f"PostgreSQL {version}, Python {platform.python_version()}, {platform.machine()}")
    print(f"deliver(), {options.rounds} rounds x {options.jobs} jobs per variant, one business row per job")
    print(f"{'variant':<18}{'median':>10}{'p95':>10}{'vs plain':>10}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<18}{median * 1e3:>8.3f}ms{percentile(values, 0.95) * 1e3:>8.3f}ms{median / base - 1:>+10.1%}")
    print("versions.upgraded() alone: " + ", ".join(f"{name} {value * 1e6:.2f} µs" for name, value in step.items()))


if __name__ == "__main__":
    main()
