"""S6 and S11: the broker loses published messages: the relay publishes the jobs again, and each runs once.

No worker consumes while the queue is flushed, so the jobs stay ``enqueued``
with no message anywhere; once ``REPUBLISH_AFTER`` has passed, a relay pass
publishes each again and counts it.
"""

import pytest
from django.db import transaction

from critical_path.models import Job
from critical_path.relay import passes
from tests.effects import note
from tests.faults.outcomes import assert_ran_once_each, statuses, wait_until_all
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = 10


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    return request.getfixturevalue({"redis": "redis_server", "rabbitmq": "rabbitmq_node"}[request.param])


def test_s6_messages_lost_by_the_broker_are_republished(broker, launch, use_broker, settings):
    settings.CRITICAL_PATH_REPUBLISH_AFTER = 1.0
    use_broker(broker.url)
    with transaction.atomic():
        keys = [note.using(key=f"s6-{index}").after_commit("lost").idempotency_key for index in range(JOBS)]
    wait_for(lambda: statuses(keys)[Job.Status.ENQUEUED] == JOBS, timeout=20, message="the dispatcher's hand-off")
    wait_for(lambda: broker.queue_length(launch.queue) == JOBS, timeout=10, message="the messages in the broker")
    assert broker.flush_queue(launch.queue) == JOBS

    republished = []

    def republish():
        republished.append(passes.run_once("default").republished)
        return sum(republished) >= JOBS

    wait_for(republish, timeout=10, interval=0.2, message="a relay pass republishes the lost messages")
    assert sum(republished) == JOBS
    assert statuses(keys) == {Job.Status.ENQUEUED: JOBS}
    assert list(Job.objects.filter(idempotency_key__in=keys).values_list("republished", flat=True)) == [1] * JOBS
    assert broker.queue_length(launch.queue) == JOBS

    launch.worker(broker.url)
    wait_until_all(keys, Job.Status.SUCCEEDED)
    assert_ran_once_each(keys)
