"""The broker dies or hangs around the hand-off: requests do not wait, and every job still runs once.

S1 and S11: the broker is down when jobs commit; the relay publishes them once
it is back. S2: the broker hangs during a burst of requests.
"""

import time

import pytest
from django.test import Client

from critical_path.models import Job
from critical_path.relay import passes
from tests.faults.outcomes import assert_ran_once_each, statuses, wait_until_all
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = 20


def broker_down_at_hand_off(broker, launch, prefix):
    """Jobs committed while ``broker`` is dead stay pending; once it is back, a relay pass and a worker run each."""
    broker.kill()
    emitter = launch.emitter(broker.url, count=JOBS, key_prefix=prefix)
    assert emitter.wait() == 0, emitter.output()
    keys = [record["key"] for record in emitter.records()]
    assert len(keys) == JOBS
    assert statuses(keys) == {Job.Status.PENDING: JOBS}

    broker.start()
    relay_pass = launch.relay(broker.url, once=True, relay_grace=0.1)
    assert relay_pass.wait() == 0, relay_pass.output()
    assert f"default: {JOBS} published," in relay_pass.output()
    assert statuses(keys) == {Job.Status.ENQUEUED: JOBS}
    launch.worker(broker.url)
    wait_until_all(keys, Job.Status.SUCCEEDED)
    assert_ran_once_each(keys)


def test_s1_redis_down_at_hand_off(redis_server, launch):
    broker_down_at_hand_off(redis_server, launch, "s1")


def test_s11_rabbitmq_with_publisher_confirms_down_at_hand_off(rabbitmq_node, launch):
    broker_down_at_hand_off(rabbitmq_node, launch, "s11")


def signup(email):
    started = time.monotonic()
    response = Client().post("/signup/", {"email": email})
    assert response.status_code == 200, response.content
    return response.json()["job"], time.monotonic() - started


def test_s2_hung_broker_during_a_burst_of_requests(redis_server, launch, use_broker, settings, caplog):
    settings.CRITICAL_PATH_RELAY_GRACE = 0.1
    worker = launch.worker(redis_server.url)
    use_broker(redis_server.url)
    warm, _ = signup("warm@example.com")
    wait_for(lambda: Job.objects.get(pk=warm).status == Job.Status.SUCCEEDED, message="hand-off before the hang")

    redis_server.pause()
    try:
        burst = [signup(f"user{index}@example.com") for index in range(JOBS)]
        wait_for(lambda: "broker unreachable" in caplog.text, timeout=10, message="the dispatcher gives up")
        assert Job.objects.filter(pk__in=[job for job, _ in burst]).exclude(status=Job.Status.PENDING).count() == 0
        burst += [signup(f"late{index}@example.com") for index in range(5)]  # while the dispatcher waits it out
    finally:
        redis_server.resume()
    slowest = max(seconds for _, seconds in burst)
    assert slowest < 1.0, f"a request took {slowest:.2f} s while the broker hung"

    jobs = Job.objects.filter(pk__in=[warm, *(job for job, _ in burst)])
    keys = [job.effective_idempotency_key for job in jobs]

    def all_succeeded():
        passes.run_once("default")
        return jobs.filter(status=Job.Status.SUCCEEDED).count() == len(keys)

    wait_for(all_succeeded, timeout=60, interval=0.2, message="every job succeeded after the broker resumed")
    assert_ran_once_each(keys)
    assert worker.running
