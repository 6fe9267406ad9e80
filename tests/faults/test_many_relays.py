"""S7: four relays and four workers over thousands of jobs, a part of whose hand-off was lost, with retries.

The relays run side by side on PostgreSQL (``FOR UPDATE SKIP LOCKED``) and race
the dispatchers for young pending jobs, so some jobs are published twice: every
job must still succeed, and its side effect succeed exactly once. A quarter of
the jobs come from a web process killed right after its commit and a quarter
from one whose dispatcher queue holds one job, so the relays publish those;
every fifth job fails its first attempt, so its retry goes through a relay too.

``CRITICAL_PATH_FAULTS_JOBS`` sets the number of jobs (2,000 by default).
"""

import os
import re

import pytest
from django.db import connections

from critical_path.core.crashpoints import CRASH_EXIT_CODE
from critical_path.models import Job
from tests.faults.effects import marked_to_fail
from tests.faults.outcomes import runs_per_key, statuses, wait_until_all

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = int(os.environ.get("CRITICAL_PATH_FAULTS_JOBS", "2000"))
EFFECT = "tests.faults.effects.fails_first_time"
PER_TRANSACTION = 10


def published_by(relay):
    return sum(int(count) for count in re.findall(r"^default: (\d+) published", relay.output(), re.MULTILINE))


def test_s7_four_relays_and_four_workers_lose_nothing_and_run_nothing_twice(redis_server, launch):
    if connections["default"].vendor != "postgresql":
        pytest.skip("relays run side by side on PostgreSQL only (set DATABASE_URL)")
    url = redis_server.url
    workers = [launch.worker(url, concurrency=2, ready=False) for _ in range(4)]
    relays = [launch.relay(url, interval=0.2, relay_grace=0.2) for _ in range(4)]
    for worker in workers:
        worker.wait_for_output(" ready.", timeout=60)

    quarter = JOBS // 4
    sizes = {"s7-crash": quarter, "s7-full": quarter, "s7-a": quarter, "s7-b": JOBS - 3 * quarter}
    emit = {"effect": EFFECT, "per_transaction": PER_TRANSACTION}
    crashed = launch.emitter(
        url, count=quarter, key_prefix="s7-crash", effect=EFFECT, per_transaction=quarter,
        crash_points=("dispatch.before_publish",),
    )  # fmt: skip
    emitters = [
        launch.emitter(url, count=quarter, key_prefix="s7-full", dispatcher_queue_size=1, **emit),
        launch.emitter(url, count=quarter, key_prefix="s7-a", **emit),
        launch.emitter(url, count=sizes["s7-b"], key_prefix="s7-b", **emit),
    ]
    budget = 60 + JOBS / 20  # seconds: two cores run about 50 jobs/s
    assert crashed.wait(timeout=budget) == CRASH_EXIT_CODE, crashed.output()
    for emitter in emitters:
        assert emitter.wait(timeout=budget) == 0, emitter.output()
    keys = [f"{prefix}-{index}" for prefix, size in sizes.items() for index in range(size)]
    assert len(keys) == JOBS

    wait_until_all(keys, Job.Status.SUCCEEDED, timeout=budget)

    succeeded, failed = runs_per_key("fails_first_time"), runs_per_key("fails_first_time.failed")
    twice = {key: runs for key, runs in succeeded.items() if runs != 1}
    sample = dict(list(twice.items())[:20])
    assert not twice, f"{len(twice)} side effects succeeded more than once (key: runs, first 20): {sample}"
    assert set(succeeded) == set(keys)
    marked = {key for key in keys if marked_to_fail(key)}
    assert failed == dict.fromkeys(marked, 1), "every marked job fails its first attempt once, and only it"
    assert statuses(keys) == {Job.Status.SUCCEEDED: JOBS}
    assert all(relay.running for relay in relays), [relay.output() for relay in relays]
    assert all(worker.running for worker in workers)
    # The relays had work: the crashed web process's jobs and every retry went through them.
    assert sum(published_by(relay) for relay in relays) >= quarter + len(marked)
