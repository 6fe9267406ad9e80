"""S4: a relay dies between publishing a batch and marking it: the next pass publishes again, and each job runs once."""

import re

import pytest

from critical_path.core.crashpoints import CRASH_EXIT_CODE
from critical_path.models import Job
from tests.faults.outcomes import assert_ran_once_each, statuses, wait_until_all
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = 10


def test_s4_relay_killed_between_publish_and_mark(redis_server, launch):
    emitter = launch.emitter(
        redis_server.url, count=JOBS, key_prefix="s4", per_transaction=JOBS, crash_points=("dispatch.before_publish",)
    )
    assert emitter.wait() == CRASH_EXIT_CODE, emitter.output()
    keys = [f"s4-{index}" for index in range(JOBS)]

    crashed = launch.relay(redis_server.url, once=True, relay_grace=0.1, crash_points=("relay.before_mark",))
    assert crashed.wait() == CRASH_EXIT_CODE, crashed.output()
    assert statuses(keys) == {Job.Status.PENDING: JOBS}, "the batch was marked before the crash"
    assert redis_server.queue_length(launch.queue) == JOBS

    relay_pass = launch.relay(redis_server.url, once=True, relay_grace=0.1)
    assert relay_pass.wait() == 0, relay_pass.output()
    assert f"default: {JOBS} published," in relay_pass.output()
    assert statuses(keys) == {Job.Status.ENQUEUED: JOBS}
    assert redis_server.queue_length(launch.queue) == 2 * JOBS, "every job has two messages"

    worker = launch.worker(redis_server.url)
    wait_until_all(keys, Job.Status.SUCCEEDED)
    wait_for(lambda: redis_server.queue_length(launch.queue) == 0, timeout=20, message="the copies consumed")
    assert_ran_once_each(keys)
    job_ids = set(Job.objects.filter(idempotency_key__in=keys).values_list("pk", flat=True))
    wait_for(
        lambda: {int(pk) for pk in re.findall(r"message dropped id=(\d+)", worker.output())} == job_ids,
        timeout=10,
        message="every job's copy dropped by the claim",
    )
