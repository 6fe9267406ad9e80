"""Side effects that cannot succeed end dead-lettered with their history: not lost, not retried forever.

S9: one always raises (retried by the relay until its attempts run out), one
raises ``PermanentFailure`` (dead at once). S10: a job whose side effect no
longer imports.
"""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from critical_path.models import Job
from critical_path.relay import passes
from tests.effects import permanent
from tests.factories import make_job
from tests.faults.effects import always_down
from tests.faults.outcomes import runs_per_key
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

FAST_RETRIES = {"retry_backoff": 0.1, "retry_backoff_max": 0.2}


def wait_until_dead(*jobs):
    rows = Job.objects.filter(pk__in=[job.pk for job in jobs])
    try:
        wait_for(lambda: all(row.status == Job.Status.DEAD for row in rows.all()), timeout=30, interval=0.2)
    except AssertionError:
        where = list(rows.values_list("effect", "status", "attempts"))
        raise AssertionError(f"not all dead-lettered after 30 s (effect, status, attempts): {where}") from None
    for job in jobs:
        job.refresh_from_db()


def assert_not_published_again(launched_relay, *jobs):
    """A pass of our own publishes none of ``jobs``; the launched relay stops first, as SQLite runs one relay."""
    launched_relay.terminate()
    published = passes.run_once("default").published_ids
    assert not {job.pk for job in jobs} & set(published)


def test_s9_failing_side_effects_are_dead_lettered_with_their_history(redis_server, launch, use_broker):
    launch.worker(redis_server.url, **FAST_RETRIES)
    launched_relay = launch.relay(redis_server.url, interval=0.2)
    use_broker(redis_server.url)
    with transaction.atomic():
        down = always_down.after_commit()
        refused = permanent.after_commit()
    wait_until_dead(down, refused)

    assert down.attempts == down.max_attempts == 3
    assert [entry["attempt"] for entry in down.error_history] == [3, 2, 1]
    assert {entry["error"] for entry in down.error_history} == {"ConnectionError: the CRM is down"}
    assert "the CRM is down" in down.last_error
    assert runs_per_key("always_down") == {down.effective_idempotency_key: 3}

    assert refused.attempts == 1
    [entry] = refused.error_history
    assert entry["attempt"] == 1 and entry["error"].endswith("PermanentFailure: the address does not exist")
    assert runs_per_key("permanent") == {refused.effective_idempotency_key: 1}
    assert_not_published_again(launched_relay, down, refused)


def test_s10_side_effect_that_no_longer_imports_is_dead_lettered(redis_server, launch, use_broker):
    long_ago = timezone.now() - timedelta(minutes=5)
    job = make_job(
        effect="tests.faults.gone.removed", queue=launch.queue, max_attempts=3, created_at=long_ago,
        available_at=long_ago,
    )  # fmt: skip
    launch.worker(redis_server.url, **FAST_RETRIES)
    launched_relay = launch.relay(redis_server.url, interval=0.2)
    wait_until_dead(job)

    assert job.attempts == 3
    assert len(job.error_history) == 3
    assert "No side effect at 'tests.faults.gone.removed'" in job.last_error
    assert "No module named 'tests.faults.gone'" in job.last_error
    use_broker(redis_server.url)
    assert_not_published_again(launched_relay, job)
