"""Time limits: the lease they imply, and an attempt stopped by its soft limit (raised here in-process)."""

from datetime import timedelta

import pytest
from django.db import transaction

from critical_path.models import Job
from critical_path.worker import delivery, timeouts
from critical_path.worker.outcomes import Outcome
from tests.effects import records_its_lease, stopped_by_its_soft_limit
from tests.helpers import wait_for
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def emit(effect, *args):
    with transaction.atomic():
        return effect.after_commit(*args)


def test_lease_is_the_hard_limit_plus_the_grace(settings):
    settings.CRITICAL_PATH_LEASE_GRACE = 15
    assert timeouts.lease(10) == timedelta(seconds=25)
    assert timeouts.lease(None) == timedelta(seconds=315)  # CRITICAL_PATH_TIME_LIMIT's 300 s


def test_claim_holds_the_job_for_the_messages_hard_limit_plus_the_grace():
    job = emit(records_its_lease)
    assert delivery.deliver(job.pk, "default", time_limit=42) == Outcome.SUCCEEDED
    assert Ledger.objects.get(name="lease").value == 42 + 60


def test_soft_limit_is_a_failed_attempt_with_a_clear_error_then_dead_letter():
    job = emit(stopped_by_its_soft_limit)
    assert delivery.deliver(job.pk, "default", time_limit=30, soft_time_limit=2) == Outcome.FAILED
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert job.error_history[0]["error"] == (
        "critical_path.exceptions.AttemptTimedOut: attempt 1 ran past its soft time limit of 2 s and was stopped. "
        "If the work needs longer, raise soft_time_limit= (and time_limit=) on @side_effect(...); if it waits on "
        "a call out, give that call a timeout shorter than the limit."
    )
    assert "SoftTimeLimitExceeded" in job.last_error  # the original, with where the function was stopped

    wait_for(lambda: delivery.deliver(job.pk, "default") != Outcome.SKIPPED, message="retry due")
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.DEAD, 2)
    assert job.error_history[0]["error"].startswith(
        "critical_path.exceptions.AttemptTimedOut: attempt 2 ran past its soft time limit and was stopped."
    )  # no limit in the message (a worker's own task_soft_time_limit): the error names none
