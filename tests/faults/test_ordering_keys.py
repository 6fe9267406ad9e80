"""S13: four relays and four workers run the jobs of 20 ordering keys one at a time per key, in id order.

Four web processes emit ``CRITICAL_PATH_FAULTS_JOBS`` jobs (1,000 by default),
ten per transaction, each over five ordering keys of its own, so the jobs of a
key come from transactions one after another and their id order is the order
they must run in. One web process's dispatcher queue holds one job, so the
relays hand off most of its jobs; every fifth job fails its first attempt, so
the jobs after it wait for its retry, which a relay publishes. The side effect
records its start and its end from inside the worker: per key, the records must
read start, end (or start, failed, start, end) for each job in id order, with
nothing of another job in between.
"""

import os
from collections import defaultdict

import pytest
from django.db import connections

from critical_path.models import Job
from tests.faults.effects import marked_to_fail
from tests.faults.outcomes import statuses, wait_until_all
from tests.testapp.models import Ledger

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = int(os.environ.get("CRITICAL_PATH_FAULTS_JOBS", "1000"))
EFFECT = "tests.faults.effects.takes_its_turn"
EMITTERS = 4
KEYS_PER_EMITTER = 5


def expected_runs(job_ids, key_of):
    """The records of one ordering key's jobs run one at a time in id order."""
    events = []
    for job_id in job_ids:
        if marked_to_fail(key_of[job_id]):
            events += [("start", job_id), ("failed", job_id)]
        events += [("start", job_id), ("end", job_id)]
    return events


def test_s13_jobs_of_an_ordering_key_run_one_at_a_time_in_id_order(redis_server, launch):
    if connections["default"].vendor != "postgresql":
        pytest.skip("relays and workers run side by side on PostgreSQL only (set DATABASE_URL)")
    url = redis_server.url
    workers = [launch.worker(url, concurrency=2, ready=False) for _ in range(4)]
    relays = [launch.relay(url, interval=0.2, relay_grace=0.2, republish_after=5) for _ in range(4)]
    for worker in workers:
        worker.wait_for_output(" ready.", timeout=60)

    count = JOBS // EMITTERS
    prefixes = [f"s13-{name}" for name in "abcd"]
    emit = {"effect": EFFECT, "per_transaction": 10, "ordering_keys": KEYS_PER_EMITTER}
    emitters = [
        launch.emitter(url, count=count, key_prefix=prefix, **emit, **({"dispatcher_queue_size": 1} if i == 0 else {}))
        for i, prefix in enumerate(prefixes)
    ]
    budget = 60 + JOBS / 10  # seconds: each key's jobs run one after another, retries waiting their backoff
    for emitter in emitters:
        assert emitter.wait(timeout=budget) == 0, emitter.output()
    keys = [f"{prefix}-{index}" for prefix in prefixes for index in range(count)]

    wait_until_all(keys, Job.Status.SUCCEEDED, timeout=budget)

    jobs = Job.objects.filter(idempotency_key__in=keys).order_by("pk")
    key_of = dict(jobs.values_list("pk", "idempotency_key"))
    lines = defaultdict(list)
    for job_id, ordering_key in jobs.values_list("pk", "ordering_key"):
        lines[ordering_key].append(job_id)
    assert len(lines) == EMITTERS * KEYS_PER_EMITTER
    records = Ledger.objects.filter(name__startswith="takes_its_turn.").order_by("pk")
    ran = defaultdict(list)
    ordering_key_of = {job_id: key for key, job_ids in lines.items() for job_id in job_ids}
    for name, value in records.values_list("name", "value"):
        ran[ordering_key_of[value["job"]]].append((name.rsplit(".", 1)[1], value["job"]))
    for ordering_key, job_ids in lines.items():
        expected = expected_runs(job_ids, key_of)
        actual = ran[ordering_key]
        if actual != expected:
            at = next((i for i, pair in enumerate(zip(actual, expected, strict=False)) if pair[0] != pair[1]), None)
            at = min(len(actual), len(expected)) if at is None else at
            raise AssertionError(
                f"{ordering_key}: runs out of order or overlapping at record {at}: "
                f"got {actual[max(0, at - 3) : at + 3]}, expected {expected[max(0, at - 3) : at + 3]}"
            )
    assert statuses(keys) == {Job.Status.SUCCEEDED: len(keys)}
    assert all(relay.running for relay in relays), [relay.output() for relay in relays]
    assert all(worker.running for worker in workers)
