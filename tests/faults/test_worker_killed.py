"""S5 and S11: a worker SIGKILLed mid-function: the relay rescues the job after its lease, and it completes.

The killed attempt stays ``running`` (its message given back is dropped by the
claim) until its lease is over; the relay then moves it to ``failed`` with a
``WorkerLostError`` and publishes the retry. The side effect delivers after its
work, once per idempotency key, so the killed attempt delivered nothing.
"""

import os
import signal

import pytest
from django.db import transaction

from critical_path.models import Job
from tests.faults.effects import stalls_then_delivers
from tests.faults.outcomes import runs_per_key, wait_until_all
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

#: Shorter than the side effect's time limit (3 s): only the kill stops the first attempt.
STALL = 2.0
KNOBS = {"lease_grace": 0.5, "retry_backoff": 0.1, "retry_backoff_max": 0.2}


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    return request.getfixturevalue({"redis": "redis_server", "rabbitmq": "rabbitmq_node"}[request.param])


@pytest.mark.parametrize("victim", ["pool process", "worker"])
def test_s5_worker_killed_mid_function_is_rescued_and_delivers_once(broker, victim, launch, use_broker):
    worker = launch.worker(broker.url, concurrency=1, **KNOBS)
    launch.relay(broker.url, interval=0.2, **KNOBS)
    use_broker(broker.url)
    with transaction.atomic():
        job = stalls_then_delivers.using(key="s5").after_commit(STALL)

    wait_for(lambda: runs_per_key("stalls_then_delivers"), timeout=20, message="the first attempt started")
    if victim == "pool process":
        [pool_process] = worker.members()
        os.kill(pool_process, signal.SIGKILL)
    else:
        worker.kill()
        launch.worker(broker.url, concurrency=1, **KNOBS)

    wait_until_all(["s5"], Job.Status.SUCCEEDED, timeout=30)
    job.refresh_from_db()
    assert job.attempts == 2
    [lost] = job.error_history
    assert lost["attempt"] == 1 and lost["error"].startswith("WorkerLostError: attempt 1 lost its worker"), lost
    assert runs_per_key("stalls_then_delivers") == {"s5": 2}
    assert runs_per_key("stalls_then_delivers.delivered") == {"s5": 1}
