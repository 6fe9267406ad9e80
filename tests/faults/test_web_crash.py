"""S3: the web process dies right after its commit, before its dispatcher publishes anything."""

import pytest

from critical_path.core.crashpoints import CRASH_EXIT_CODE
from critical_path.models import Job
from tests.faults.outcomes import assert_ran_once_each, statuses, wait_until_all

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = 10


def test_s3_jobs_of_a_web_process_killed_after_commit_are_relayed(redis_server, launch):
    emitter = launch.emitter(
        redis_server.url, count=JOBS, key_prefix="s3", per_transaction=JOBS, crash_points=("dispatch.before_publish",)
    )
    assert emitter.wait() == CRASH_EXIT_CODE, emitter.output()
    keys = [f"s3-{index}" for index in range(JOBS)]
    assert statuses(keys) == {Job.Status.PENDING: JOBS}
    assert redis_server.queue_length(launch.queue) == 0

    relay = launch.relay(redis_server.url, relay_grace=1.0)
    launch.worker(redis_server.url)
    wait_until_all(keys, Job.Status.SUCCEEDED)
    assert_ran_once_each(keys)
    assert relay.running, relay.output()
