"""The peers' drains beside critical_path's in ``benchmarks.throughput``: their own workers, the same no-op jobs.

  procrastinate   ``--drain-jobs`` jobs of a no-op task written in bulk (``batch_defer``,
                  through its Django integration) to its own table, then its worker
                  (``manage.py procrastinate worker --one-shot``, ``--concurrency``
                  as its concurrency): jobs/s from the first job's ``started`` event
                  to the last one's ``succeeded`` event
  django_tasks    as many rows of a no-op task written in bulk to django-tasks-db's
                  table, then ``--concurrency`` ``db_worker --batch`` processes:
                  jobs/s from the first ``started_at`` to the last ``finished_at``

Each worker exits once nothing is left; its start-up is not counted (the clock
starts at the first job's start, as critical_path's drain does). Only the peers
whose packages are installed run (``benchmarks.peers``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Rows written per INSERT when filling a peer's table.
CHUNK = 1000


def run_workers(commands: list[list[str]], log: Path, timeout: float) -> None:
    """Start the workers, wait (bounded) until every one exited by itself, and check they exited cleanly."""
    processes = []
    with log.open("ab") as out:
        for command in commands:
            processes.append(
                subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
    deadline = time.monotonic() + timeout
    try:
        while any(process.poll() is None for process in processes):
            if time.monotonic() > deadline:
                raise SystemExit(f"a peer's worker still ran after {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.05)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
    if any(process.returncode for process in processes):
        raise SystemExit(f"a peer's worker failed:\n{tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def procrastinate(jobs: int, concurrency: int, log: Path) -> dict[str, Any]:
    from django.db import connection

    from benchmarks.benchapp.procrastinate_tasks import sync_crm

    for start in range(0, jobs, CHUNK):
        sync_crm.batch_defer(*({"signup_id": n} for n in range(start, min(jobs, start + CHUNK))))
    command = [
        sys.executable, "-m", "django", "procrastinate", "worker", "--queues", "bench",
        "--concurrency", str(concurrency), "--one-shot",
    ]  # fmt: skip
    run_workers([command], log, max(120.0, jobs / 10))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'),"
            " EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = 'succeeded') - min(at) FILTER (WHERE type = 'started'))"
            " FROM procrastinate_events"
        )
        succeeded, seconds = cursor.fetchone()  # type: ignore[misc]
        cursor.execute("TRUNCATE procrastinate_jobs CASCADE")
    if succeeded != jobs:
        raise SystemExit(f"procrastinate ran {succeeded} of {jobs} jobs:\n{tail(log)}")
    return {"jobs": jobs, "seconds": float(seconds), "jobs_per_s": jobs / float(seconds), "processes": 1}


def django_tasks(jobs: int, concurrency: int, log: Path) -> dict[str, Any]:
    from django.db.models import Max, Min
    from django_tasks_db.models import DBTaskResult, get_date_max

    from benchmarks.benchapp.django_tasks import sync_crm

    DBTaskResult.objects.bulk_create(
        (
            DBTaskResult(
                args_kwargs={"args": [n], "kwargs": {}},
                priority=sync_crm.priority,
                task_path=sync_crm.module_path,
                queue_name=sync_crm.queue_name,
                run_after=get_date_max(),  # what its pre_save handler sets for "now", which bulk_create skips
                backend_name="default",
            )
            for n in range(jobs)
        ),
        batch_size=CHUNK,
    )
    command = [sys.executable, "-m", "django", "db_worker", "--queue-name", "bench", "--batch", "--no-startup-delay"]
    run_workers([command] * concurrency, log, max(120.0, jobs / 10))
    finished = DBTaskResult.objects.filter(status="SUCCESSFUL")
    span = finished.aggregate(first=Min("started_at"), last=Max("finished_at"))
    succeeded = finished.count()
    DBTaskResult.objects.all().delete()
    if succeeded != jobs:
        raise SystemExit(f"django-tasks-db ran {succeeded} of {jobs} jobs:\n{tail(log)}")
    seconds = (span["last"] - span["first"]).total_seconds()
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds, "processes": concurrency}


#: Each peer's drain, by the name ``benchmarks.peers`` gives it.
DRAINS: dict[str, Callable[[int, int, Path], dict[str, Any]]] = {
    "procrastinate": procrastinate,
    "django_tasks": django_tasks,
}
