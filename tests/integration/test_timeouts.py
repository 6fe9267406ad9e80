"""Soft time limits enforced by a real prefork worker: the attempt fails with a clear error and is retried."""

import pytest
from django.db import transaction

from critical_path.models import Job
from critical_path.relay import passes
from tests.effects import sleeps_past_its_soft_limit
from tests.helpers import wait_for
from tests.testapp.models import Ledger

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

#: Far past the side effect's soft limit (1 s), within its hard limit (10 s): only the soft limit stops it.
SLEEP = 8

TIMED_OUT = (
    "critical_path.exceptions.AttemptTimedOut: attempt {} ran past its soft time limit of 1 s and was stopped. "
    "If the work needs longer, raise soft_time_limit= (and time_limit=) on @side_effect(...); if it waits on a "
    "call out, give that call a timeout shorter than the limit."
)


@pytest.mark.parametrize(("slow_attempts", "final"), [(1, Job.Status.SUCCEEDED), (2, Job.Status.DEAD)])
def test_attempt_past_its_soft_limit_fails_and_is_retried(worker_queue, slow_attempts, final):
    with transaction.atomic():
        job = sleeps_past_its_soft_limit.after_commit(slow_attempts, SLEEP)

    def finished():
        passes.run_once("default")  # publishes the retry once its backoff has passed
        job.refresh_from_db()
        return job.status == final

    wait_for(finished, timeout=30, message=f"job {final}")
    assert job.attempts == 2
    assert [entry["error"] for entry in job.error_history] == [
        TIMED_OUT.format(attempt) for attempt in range(slow_attempts, 0, -1)
    ]
    assert "time.sleep(seconds)" in job.error_history[-1]["traceback"]  # where the limit stopped it
    assert Ledger.objects.filter(name="sleeps_past_its_soft_limit").count() == 2
