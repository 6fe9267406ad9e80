"""S15: a side effect whose module raises at import (not ``ImportError``): its attempts fail, nothing else waits.

Its jobs and a plain job are left to the relay. The relay publishes both (the
broken one with the default time limits), the worker records each attempt of the
broken one as failed with the import's own error, and it is dead-lettered after
its attempts; the plain one runs meanwhile. Without that, the relay's pass stops
at the import error as at a broker outage, and the worker holds the broken job
for a whole lease per attempt, recorded as a lost worker.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from critical_path.models import Job
from tests.factories import make_job
from tests.faults.outcomes import runs_per_key
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

FAST_RETRIES = {"retry_backoff": 0.1, "retry_backoff_max": 0.2}


def test_s15_side_effect_whose_module_fails_at_import_fails_its_attempts_and_holds_up_no_other_job(
    redis_server, launch
):
    long_ago = timezone.now() - timedelta(minutes=5)
    broken = make_job(
        effect="tests.faults.broken.push", queue=launch.queue, max_attempts=2, created_at=long_ago,
        available_at=long_ago,
    )  # fmt: skip
    plain = make_job(queue=launch.queue, idempotency_key="s15", created_at=long_ago, available_at=long_ago)
    launch.worker(redis_server.url, **FAST_RETRIES)
    relay = launch.relay(redis_server.url, interval=0.2, **FAST_RETRIES)

    rows = Job.objects.filter(pk__in=[broken.pk, plain.pk])
    try:
        wait_for(
            lambda: (
                dict(rows.values_list("pk", "status")) == {broken.pk: Job.Status.DEAD, plain.pk: Job.Status.SUCCEEDED}
            ),
            timeout=30,
            interval=0.2,
        )
    except AssertionError:
        where = list(rows.values_list("effect", "status", "attempts"))
        raise AssertionError(f"after 30 s (effect, status, attempts): {where}\n{relay.output()}") from None
    assert runs_per_key("note") == {"s15": 1}
    broken.refresh_from_db()
    assert broken.attempts == 2
    assert [entry["error"] for entry in broken.error_history] == [
        "django.core.exceptions.ImproperlyConfigured: CRM_API_KEY is not set: add it to the settings to send to the CRM"
    ] * 2
