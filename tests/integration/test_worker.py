"""End to end through a real broker and a real Celery worker (prefork)."""

from datetime import timedelta

import pytest
from django.db import transaction

from critical_path.models import Job
from critical_path.relay import passes
from tests.effects import always_fails, flaky, note
from tests.helpers import wait_for
from tests.testapp.models import Account, Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def status(job):
    return Job.objects.using(job._state.db).get(pk=job.pk).status


def test_committed_side_effect_runs_once_on_the_worker(worker_queue):
    with transaction.atomic():
        account = Account.objects.create(email="ada@example.com")
        job = note.after_commit(account.email, tag="welcome")
    wait_for(lambda: status(job) == Job.Status.SUCCEEDED, message="job succeeded")
    [run] = Ledger.objects.all()
    assert run.value == {"text": "ada@example.com", "tag": "welcome"}
    assert run.idempotency_key == str(job.uuid)


@pytest.mark.slow
def test_rolled_back_side_effect_never_runs(worker_queue):
    with pytest.raises(RuntimeError), transaction.atomic():
        note.after_commit("never")
        raise RuntimeError("rollback")
    with transaction.atomic():
        marker = note.after_commit("after")
    wait_for(lambda: status(marker) == Job.Status.SUCCEEDED)
    assert [row.value["text"] for row in Ledger.objects.all()] == ["after"]
    assert Job.objects.count() == 1


@pytest.mark.slow
def test_retry_with_backoff_then_success(worker_queue):
    with transaction.atomic():
        job = flaky.after_commit(2)

    def done():
        passes.run_once("default")  # publishes the retries whose backoff has passed
        return status(job) == Job.Status.SUCCEEDED

    wait_for(done, message="flaky job succeeded")
    job.refresh_from_db()
    assert job.attempts == 3
    assert [entry["attempt"] for entry in job.error_history] == [2, 1]
    assert Ledger.objects.filter(name="flaky").count() == 3


@pytest.mark.slow
def test_delayed_jobs_and_retries_start_when_due_without_a_relay(worker_queue):
    """Due within CRITICAL_PATH_TIMED_HANDOFF_WITHIN, they are handed to the broker with their due time."""
    with transaction.atomic():
        delayed = note.using(delay=timedelta(seconds=1)).after_commit("later")
        retried = flaky.after_commit(1)
    wait_for(lambda: status(delayed) == status(retried) == Job.Status.SUCCEEDED, message="both succeeded")
    delayed.refresh_from_db()
    retried.refresh_from_db()
    assert delayed.started_at >= delayed.available_at and delayed.attempts == 1
    assert retried.attempts == 2 and retried.started_at >= retried.available_at


@pytest.mark.slow
def test_exhausted_job_is_dead_lettered_with_its_history(worker_queue):
    with transaction.atomic():
        job = always_fails.after_commit()

    def dead():
        passes.run_once("default")
        return status(job) == Job.Status.DEAD

    wait_for(dead, message="job dead-lettered")
    job.refresh_from_db()
    assert job.attempts == 2
    assert "downstream is down" in job.last_error
    assert [entry["error"] for entry in job.error_history] == ["ValueError: downstream is down"] * 2


@pytest.mark.slow
def test_second_database(worker_queue):
    with transaction.atomic(using="other"):
        job = note.using(database="other").after_commit("elsewhere")
    wait_for(lambda: status(job) == Job.Status.SUCCEEDED)
    assert Ledger.objects.using("other").get().idempotency_key == str(job.uuid)
