"""Delivery with real Celery workers: latency under load, drains beside the peers', statements per job, memory.

    python -m benchmarks.throughput [--rate 200] [--duration 60] [--drain-jobs 10000]
                                    [--memory-jobs 1000 100000] [--statement-jobs 300] [--concurrency 2]
                                    [--drain-rounds 1] [--db-reuse-max 0 [1000]] [--quick] [--out benchmarks/results]

Four measurements, each with a Celery worker (prefork, ``--concurrency``
processes) started as a subprocess on the benchmark's PostgreSQL database and
redis-server, and side effects that do nothing:

  load     an open-loop load of ``--rate`` signups per second for ``--duration``
           seconds, each a transaction with three ``after_commit`` calls (the
           dispatcher publishes in this process) while the worker runs them:
           queue wait (``started_at - max(enqueued_at, available_at)``) and
           emit to start (``started_at - created_at``), p50/p99; the rate
           achieved; the jobs not yet succeeded when the load stops (backlog)
  drain    ``--drain-jobs`` pending jobs written in bulk and published by the
           relay, then the worker started: jobs/s from the first start to the
           last finish; then as many messages of a bare Celery task that does
           nothing, the baseline; for both, the worker's CPU time per job;
           then the installed peers' drains of as many jobs with their own
           workers (``benchmarks.peer_drains``). ``--drain-rounds`` rounds,
           the order rotating, once per ``--db-reuse-max`` value
           (``CELERY_DB_REUSE_MAX`` of the Celery workers; 0: unset)
  statements  statements and commits per job on the happy path (emit,
           hand-off, claim, outcome), counted by the client and by
           PostgreSQL (``benchmarks.statements``)
  memory   a fresh worker drains the first ``--memory-jobs`` count of jobs, then
           the rest up to the second: the peak RSS (VmHWM) of its pool processes
           and of the main process after each

PostgreSQL and Redis as for the other benchmarks (database
``critical_path_bench_throughput``). ``--quick`` runs each with tiny numbers
(seconds), to check the benchmark works, not to measure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.support import environment, percentile

ROOT = Path(__file__).resolve().parent.parent
FULL = {"rate": 200.0, "duration": 60.0, "drain_jobs": 10_000, "memory_jobs": [1_000, 100_000], "statement_jobs": 300}
QUICK = {"rate": 20.0, "duration": 3.0, "drain_jobs": 200, "memory_jobs": [50, 200], "statement_jobs": 30}
#: Signups per second while the statements are counted (as the commit-to-start measurement runs).
STATEMENT_RATE = 30.0

PENDING = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, queue, priority, republished,
    correlation_id, last_error, error_history, created_at, available_at)
SELECT 'benchmarks.benchapp.effects.sync_crm', jsonb_build_array(n), '{}'::jsonb, 'pending', 0, 5, 'bench', 0, 0,
    md5(n::text), '', '[]'::jsonb, now() - interval '1 hour', now() - interval '1 hour'
FROM generate_series(1, %s) AS n
"""  # emitted an hour ago: past the relay's grace period, so the relay publishes them at once


@contextlib.contextmanager
def celery_worker(concurrency: int, log: Path, queue: str = "bench") -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker (prefork) on ``queue``, answering pings before this yields; stopped on exit."""
    from celery import current_app

    name = f"bench-{uuid.uuid4().hex[:8]}@localhost"
    command = [
        sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker", "-Q", queue, "-P", "prefork",
        "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
        "-n", name,
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not current_app.control.ping(destination=[name], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Celery worker did not start:\n{log.read_text(errors='replace')}")
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def peak_rss_mb(pid: int) -> float:
    """The peak resident set (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmHWM for process {pid}")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a prefork worker's pool)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def live() -> int:
    from critical_path.models import Job

    return Job.objects.filter(status__in=Job.LIVE_STATUSES).count()


def drain(timeout: float) -> None:
    """Wait until no job is live (all succeeded), polling against a deadline."""
    deadline = time.monotonic() + timeout
    while live():
        if time.monotonic() > deadline:
            raise SystemExit(f"{live()} jobs still live after {timeout:.0f} s: see the worker's log")
        time.sleep(0.2)


def publish_pending(jobs: int) -> float:
    """Write ``jobs`` pending jobs in bulk and publish them with relay passes; the seconds publishing took."""
    from django.db import connection

    from critical_path.models import Job
    from critical_path.publishing.publisher import Publisher
    from critical_path.relay import passes as relay

    with connection.cursor() as cursor:
        cursor.execute(PENDING, [jobs])
        cursor.execute("ANALYZE critical_path_job")
    publisher = Publisher()
    started = time.perf_counter()
    while Job.objects.filter(status=Job.Status.PENDING).exists():
        result = relay.run_once("default", publisher=publisher, batch_size=1000)
        if result.broker_down:
            raise SystemExit(f"the relay could not publish: {result.error}")
    publisher.release()
    return time.perf_counter() - started


def load(rate: float, duration: float, concurrency: int, log: Path) -> dict[str, Any]:
    """Signups at ``rate`` per second for ``duration`` seconds, three side effects each, while a worker runs them."""
    from django.db import connection, transaction
    from django.utils import timezone

    from benchmarks.benchapp.effects import recompute_stats, send_welcome_email, sync_crm
    from benchmarks.benchapp.models import Signup
    from critical_path.publishing import dispatcher as dispatch

    def signup() -> None:
        with transaction.atomic():
            row = Signup.objects.create(email="ada@example.com")
            send_welcome_email.after_commit(row.pk)
            sync_crm.after_commit(row.pk)
            recompute_stats.after_commit()

    with celery_worker(concurrency, log):
        signup()  # warm up: connections, the dispatcher, the producer
        drain(60)
        since = timezone.now()
        requests = 0
        started = next_start = time.perf_counter()
        while (now := time.perf_counter()) - started < duration:
            next_start += 1 / rate  # open loop: the schedule does not wait for slow requests
            time.sleep(max(0.0, next_start - now))
            signup()
            requests += 1
        elapsed = time.perf_counter() - started
        backlog = live()
        drain(max(120.0, duration * 10))
        dispatch.shutdown(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM started_at - GREATEST(enqueued_at, available_at)),"
            " EXTRACT(EPOCH FROM started_at - created_at) FROM critical_path_job WHERE created_at >= %s",
            [since],
        )
        rows = cursor.fetchall()
    waits = [float(row[0]) * 1000 for row in rows]
    starts = [float(row[1]) * 1000 for row in rows]
    return {
        "rate": rate,
        "duration_s": duration,
        "requests": requests,
        "jobs": len(rows),
        "achieved_requests_per_s": requests / elapsed,
        "achieved_jobs_per_s": 3 * requests / elapsed,
        "backlog_at_end": backlog,
        "queue_wait_p50_ms": percentile(waits, 0.5),
        "queue_wait_p99_ms": percentile(waits, 0.99),
        "emit_to_start_p50_ms": percentile(starts, 0.5),
        "emit_to_start_p99_ms": percentile(starts, 0.99),
    }


def consume(process: subprocess.Popen[bytes], queue: str) -> None:
    """Have a running worker start consuming ``queue`` (Celery's ``add_consumer`` remote control)."""
    from celery import current_app

    name = process.args[process.args.index("-n") + 1]  # type: ignore[union-attr]
    current_app.control.add_consumer(queue, destination=[name], reply=True, timeout=10)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_cpu(process: subprocess.Popen[bytes]) -> dict[str, float]:
    """CPU seconds so far of a worker's main process and of its pool processes together."""
    return {"main": cpu_seconds(process.pid), "pool": sum(cpu_seconds(pid) for pid in children(process.pid))}


def cpu_per_job_ms(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    return {f"{part}_cpu_ms_per_job": (after[part] - before[part]) * 1000 / jobs for part in before}


def critical_path_drain(jobs: int, concurrency: int, log: Path) -> dict[str, Any]:
    """``jobs`` pending jobs published, then given to a ready worker: jobs/s from its first start to its last finish.

    With the seconds the relay took to publish them, and the worker's CPU time per job, main process and pool.
    """
    from django.db import connection

    with celery_worker(concurrency, log, queue="bench-idle") as process:
        publishing = publish_pending(jobs)
        before = worker_cpu(process)
        consume(process, "bench")  # the drain starts now, the worker ready
        drain(max(120.0, jobs / 10))
        cpu = cpu_per_job_ms(before, worker_cpu(process), jobs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at)) FROM critical_path_job")
        seconds = float(cursor.fetchone()[0])  # type: ignore[index]
        cursor.execute("TRUNCATE critical_path_job")
    return {
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "processes": concurrency,
        "relay_publish_s": publishing,
        **cpu,
    }


def drain_rounds(jobs: int, concurrency: int, log: Path, rounds: int, reuse_values: list[int]) -> list[dict[str, Any]]:
    """Every drain once per round and ``CELERY_DB_REUSE_MAX`` value, the order rotating from round to round.

    critical_path's, the bare Celery task's (the baseline, ``bare_drain``) and the installed peers' with their
    own workers (``benchmarks.peer_drains``), each on ``jobs`` no-op jobs.
    """
    from benchmarks import peer_drains, peers

    drains: dict[str, Callable[[int, int, Path], dict[str, Any]]] = {
        "critical_path": critical_path_drain,
        "bare_celery": bare_drain,
        **{name: peer_drains.DRAINS[name] for name in peers.installed()},
    }
    names = list(drains)
    results = []
    for reuse in reuse_values:
        for round_ in range(rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            found: dict[str, Any] = {}
            with db_reuse_max(reuse):
                for name in order:
                    found[name] = drains[name](jobs, concurrency, log)
                    print(
                        f"drain, CELERY_DB_REUSE_MAX={reuse}, round {round_ + 1}, {name}: {found[name]}",
                        file=sys.stderr,
                    )
            results.append({"db_reuse_max": reuse, "round": round_ + 1, "order": order, "drains": found})
    return results


@contextlib.contextmanager
def db_reuse_max(tasks: int) -> Iterator[None]:
    """Workers started inside run with ``CELERY_DB_REUSE_MAX = tasks`` (0: unset, Celery's default)."""
    before = os.environ.get("BENCH_DB_REUSE_MAX")
    os.environ["BENCH_DB_REUSE_MAX"] = str(tasks)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("BENCH_DB_REUSE_MAX")
        else:
            os.environ["BENCH_DB_REUSE_MAX"] = before


def bare_drain(jobs: int, concurrency: int, log: Path) -> dict[str, Any]:
    """A bare Celery task's drain on the same worker: ``jobs`` messages, jobs/s until all are run and acked."""
    import redis
    from celery import current_app

    from benchmarks.benchapp.tasks import bare

    client = redis.Redis.from_url(current_app.conf.broker_url)
    with celery_worker(concurrency, log) as process:
        # Published to a queue the worker does not consume yet, then given to it: the clock starts with the drain.
        with current_app.producer_or_acquire() as producer:
            for job_id in range(jobs):
                bare.apply_async((job_id, "default"), queue="bench-bare", producer=producer)
        started, before = time.perf_counter(), worker_cpu(process)
        consume(process, "bench-bare")
        deadline = started + max(120.0, jobs / 10)
        while client.llen("bench-bare") or client.hlen("unacked"):  # kombu's Redis transport: queue, unacked
            if time.perf_counter() > deadline:
                raise SystemExit("the bare Celery task's messages were not all run: see the worker's log")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu = cpu_per_job_ms(before, worker_cpu(process), jobs)
    client.close()
    return {"seconds": seconds, "jobs_per_s": jobs / seconds, "processes": concurrency, **cpu}


def memory(counts: list[int], concurrency: int, log: Path) -> dict[str, Any]:
    """One worker drains ``counts[0]`` jobs, then more up to each next count: its peak RSS after each."""
    from django.db import connection

    results: dict[str, Any] = {}
    done = 0
    with celery_worker(concurrency, log) as process:
        for count in sorted(counts):
            publish_pending(count - done)
            drain(max(120.0, (count - done) / 10))
            done = count
            pool = children(process.pid)
            results[str(count)] = {
                "pool_peak_rss_mb": max(peak_rss_mb(pid) for pid in pool),
                "pool_processes": len(pool),
                "main_peak_rss_mb": peak_rss_mb(process.pid),
            }
            print(f"memory after {count} jobs: {results[str(count)]}", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE critical_path_job")
    return results


#: How each drain is named in the report, given the worker's processes.
DRAIN_NAMES = {
    "critical_path": "critical_path, prefork -c {n}",
    "bare_celery": "bare Celery task, acked late, prefork -c {n}",
    "procrastinate": "procrastinate, concurrency {n}",
    "django_tasks": "django-tasks-db, {n} db_worker processes",
}


def drain_report(rounds: list[dict[str, Any]], concurrency: int) -> list[str]:
    lines = [
        "| drain | CELERY_DB_REUSE_MAX | round | jobs/s | / bare Celery | worker main process CPU ms per job "
        "| pool processes CPU ms per job |",
        "|---|---|---|---|---|---|---|",
    ]
    medians: dict[tuple[int, str], list[float]] = {}
    for round_ in rounds:
        drains, reuse = round_["drains"], round_["db_reuse_max"]
        bare = drains["bare_celery"]["jobs_per_s"]
        for name, label in DRAIN_NAMES.items():
            if name not in drains:
                continue
            row = drains[name]
            medians.setdefault((reuse, name), []).append(row["jobs_per_s"])
            cpu = [f"{row[key]:.2f}" if key in row else "-" for key in ("main_cpu_ms_per_job", "pool_cpu_ms_per_job")]
            lines.append(
                f"| {label.format(n=concurrency)} | {reuse or 'unset'} | {round_['round']} | {row['jobs_per_s']:.0f} "
                f"| {row['jobs_per_s'] / bare:.2f}x | {cpu[0]} | {cpu[1]} |"
            )
    if len(rounds) > len({round_["db_reuse_max"] for round_ in rounds}):  # several rounds: their medians
        lines += ["", "| drain | CELERY_DB_REUSE_MAX | median jobs/s | / bare Celery's median |", "|---|---|---|---|"]
        for (reuse, name), values in medians.items():
            median, bare = statistics.median(values), statistics.median(medians[(reuse, "bare_celery")])
            lines.append(
                f"| {DRAIN_NAMES[name].format(n=concurrency)} | {reuse or 'unset'} | {median:.0f} "
                f"| {median / bare:.2f}x |"
            )
    return lines


def report(data: dict[str, Any]) -> str:
    from benchmarks import statements

    meta, load_, drains, memory_ = data["meta"], data["load"], data["drain"], data["memory"]
    counts = sorted(memory_, key=int)
    publishing = [round_["drains"]["critical_path"]["relay_publish_s"] for round_ in drains]
    lines = [
        f"PostgreSQL {meta['postgres']}, Redis broker of its own, Python {meta['python']}, {meta['cpus']} CPUs; "
        f"Celery prefork worker, concurrency {meta['concurrency']}, on the same machine; side effects do nothing; "
        f"CONN_MAX_AGE {meta['conn_max_age']}.",
        "",
        f"Load: {load_['rate']:g} signups/s (3 jobs each) for {load_['duration_s']:g} s, open loop.",
        "",
        "| achieved signups/s | achieved jobs/s | queue wait p50 ms | queue wait p99 ms "
        "| emit to start p50 ms | emit to start p99 ms | backlog when the load stopped |",
        "|---|---|---|---|---|---|---|",
        f"| {load_['achieved_requests_per_s']:.1f} | {load_['achieved_jobs_per_s']:.1f} "
        f"| {load_['queue_wait_p50_ms']:.1f} | {load_['queue_wait_p99_ms']:.1f} "
        f"| {load_['emit_to_start_p50_ms']:.1f} | {load_['emit_to_start_p99_ms']:.1f} | {load_['backlog_at_end']} |",
        "",
        f"Drain: {meta['drain_jobs']:,} no-op jobs each, written in bulk; critical_path's published by the relay "
        f"(in {min(publishing):.1f}-{max(publishing):.1f} s) to a queue its worker, once ready, is given; each "
        "peer's in its own table, then its workers started. Jobs/s from the first start to the last finish (the "
        "bare Celery task: until its queue is empty and acked); each drain against the bare Celery task's of its "
        f"round. {meta['drain_rounds']} round(s), the order rotating. CPU: Celery workers only, from the drain's "
        "start.",
        "",
        *drain_report(drains, meta["concurrency"]),
    ]
    if data.get("statements"):
        lines += ["", *statements.report(data["statements"])]
    lines += [
        "",
        "| jobs run by one worker | pool process peak RSS MB | main process peak RSS MB |",
        "|---|---|---|",
        *(
            f"| {int(count):,} | {memory_[count]['pool_peak_rss_mb']:.1f} | {memory_[count]['main_peak_rss_mb']:.1f} |"
            for count in counts
        ),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, help="signups per second, 3 jobs each (default 200; quick: 20)")
    parser.add_argument("--duration", type=float, help="seconds of load (default 60; quick: 3)")
    parser.add_argument("--drain-jobs", type=int, help="pending jobs to drain (default 10000; quick: 200)")
    parser.add_argument(
        "--memory-jobs",
        type=int,
        nargs="+",
        help="jobs run before each memory reading (default 1000 100000; quick: 50 200)",
    )
    parser.add_argument(
        "--statement-jobs",
        type=int,
        help="jobs whose statements and commits are counted, 0: none (default 300; quick: 30)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's prefork processes")
    parser.add_argument(
        "--drain-rounds", type=int, default=1, help="rounds of every drain, the order rotating (default 1)"
    )
    parser.add_argument(
        "--db-reuse-max",
        type=int,
        nargs="+",
        default=[int(os.environ.get("BENCH_DB_REUSE_MAX", "0"))],
        help="CELERY_DB_REUSE_MAX for the drains' Celery workers, --drain-rounds rounds per value; 0: unset "
        "(default: BENCH_DB_REUSE_MAX, or 0)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny defaults, to check it works (not a measurement)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    defaults = QUICK if options.quick else FULL
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)

    with environment("critical_path_bench_throughput") as setup, tempfile.TemporaryDirectory() as folder:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from benchmarks import statements

        call_command("migrate", verbosity=0)
        log = Path(folder) / "worker.log"
        data: dict[str, Any] = {
            "meta": {
                "postgres": setup.postgres,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "concurrency": options.concurrency,
                "quick": options.quick,
                "conn_max_age": connection.settings_dict["CONN_MAX_AGE"],
                "db_reuse_max": options.db_reuse_max,
                "drain_rounds": options.drain_rounds,
                "drain_jobs": options.drain_jobs,
            },
            "load": load(options.rate, options.duration, options.concurrency, log),
        }
        print(f"load: {data['load']}", file=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE critical_path_job")
        data["drain"] = drain_rounds(
            options.drain_jobs, options.concurrency, log, options.drain_rounds, options.db_reuse_max
        )
        if options.statement_jobs:
            data["statements"] = statements.happy_path(
                options.statement_jobs, STATEMENT_RATE, options.concurrency, Path(folder), log
            )
        data["memory"] = memory(options.memory_jobs, options.concurrency, log)
        connection.close()
    table = report(data)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "throughput.md").write_text(table + "\n")
    (options.out / "throughput.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
