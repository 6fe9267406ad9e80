"""deliver() in this process against the real database: claim, run, record."""

from datetime import timedelta

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone

from critical_path.models import Job
from critical_path.publishing import dispatcher as dispatch
from critical_path.signals import job_dead_lettered, job_failed, job_succeeded
from critical_path.worker import delivery, rate_limits
from critical_path.worker.outcomes import Outcome
from tests.effects import (
    always_fails,
    chain,
    flaky,
    note,
    outlives_its_lease,
    overruns_and_is_replayed,
    permanent,
    throttled,
)
from tests.factories import make_job
from tests.helpers import wait_for
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def emit(effect, *args, **kwargs):
    with transaction.atomic(using=effect.options.database or "default"):
        return effect.after_commit(*args, **kwargs)


@pytest.fixture
def received():
    signals = {"succeeded": job_succeeded, "failed": job_failed, "dead": job_dead_lettered}
    seen = []

    def make_receiver(name):
        def receiver(sender, job, **kwargs):
            seen.append((name, job.pk, type(kwargs.get("error")).__name__ if "error" in kwargs else None))

        return receiver

    receivers = {name: make_receiver(name) for name in signals}
    for name, signal in signals.items():
        signal.connect(receivers[name])
    yield seen
    for name, signal in signals.items():
        signal.disconnect(receivers[name])


def test_success_is_recorded_and_signalled(received):
    job = emit(note, "hello", tag="t")
    assert delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.attempts, job.lease_expires_at) == (Job.Status.SUCCEEDED, 1, None)
    assert job.finished_at >= job.started_at >= job.created_at
    [run] = Ledger.objects.all()
    assert (run.value, run.attempt, run.idempotency_key) == ({"text": "hello", "tag": "t"}, 1, str(job.uuid))
    assert received == [("succeeded", job.pk, None)]


def test_duplicate_message_and_message_for_a_finished_job_are_no_ops():
    job = emit(note, "once")
    assert delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED
    assert delivery.deliver(job.pk, "default") == Outcome.SKIPPED
    assert delivery.deliver(10**12, "default") == Outcome.SKIPPED  # no such job
    assert Ledger.objects.count() == 1


def test_job_held_by_a_live_worker_is_not_claimed_again():
    job = make_job(Job.Status.RUNNING, attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=5))
    assert delivery.deliver(job.pk, "default") == Outcome.SKIPPED
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.RUNNING, 1)


@pytest.mark.parametrize("outcome", ["return", "raise"])
def test_worker_that_lost_its_lease_cannot_overwrite_the_newer_attempt(outcome):
    job = emit(outlives_its_lease, outcome)
    assert delivery.deliver(job.pk, "default") == Outcome.LOST_LEASE
    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error, job.finished_at) == (Job.Status.RUNNING, 2, "", None)


@pytest.mark.parametrize("outcome", ["return", "raise"])
def test_worker_that_overran_its_lease_cannot_overwrite_the_replayed_jobs_new_attempt(outcome):
    # The replay resets attempts: the new claim's attempt is 1 again, as the stale worker's was.
    job = emit(overruns_and_is_replayed, outcome)
    assert delivery.deliver(job.pk, "default") == Outcome.LOST_LEASE
    job.refresh_from_db()
    assert (job.status, job.attempts, job.claims, job.finished_at) == (Job.Status.RUNNING, 1, 2, None)


def test_a_side_effect_whose_module_raises_at_import_fails_the_attempt_with_that_error():
    job = make_job(effect="tests.faults.broken.push", max_attempts=2)
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    job.refresh_from_db()
    assert (job.status, job.attempts, job.lease_expires_at) == (Job.Status.FAILED, 1, None)
    [entry] = job.error_history
    assert entry["error"] == (
        "django.core.exceptions.ImproperlyConfigured: CRM_API_KEY is not set: add it to the settings to send to the CRM"
    )


def test_an_error_of_the_rate_limit_fails_the_attempt_with_that_error(monkeypatch):
    def take(*args, **kwargs):  # the rate limit's database fails (whatever the limiter does)
        raise OperationalError("could not serialize access due to concurrent update")

    monkeypatch.setattr(rate_limits, "take", take)
    job = emit(throttled, "over the limit?")
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    job.refresh_from_db()
    assert (job.status, job.attempts, job.lease_expires_at) == (Job.Status.FAILED, 1, None)
    [entry] = job.error_history
    assert entry["error"] == "django.db.utils.OperationalError: could not serialize access due to concurrent update"


def test_failure_is_retried_after_a_backoff_then_dead_lettered(received):
    job = emit(always_fails)
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    # RETRY_BACKOFF is 0.2 s in the test settings: the first retry waits 0.1 to 0.2 s.
    assert timedelta(seconds=0.09) <= job.available_at - job.started_at <= timedelta(seconds=1)
    assert "ValueError: downstream is down" in job.last_error
    [entry] = job.error_history
    assert (entry["attempt"], entry["error"]) == (1, "ValueError: downstream is down")
    assert "Traceback" in entry["traceback"]

    wait_for(lambda: delivery.deliver(job.pk, "default") != Outcome.SKIPPED, message="retry due")
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.DEAD, 2)
    assert [entry["attempt"] for entry in job.error_history] == [2, 1]
    assert [name for name, *_ in received] == ["failed", "dead"]
    assert received[-1][2] == "ValueError"


def test_job_failed_before_its_hand_off_is_recorded_stays_failed():
    job = emit(always_fails)  # the dispatcher publishes it while this thread runs it
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    assert dispatch.shutdown()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)


def test_retry_then_success():
    job = emit(flaky, 1)
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    wait_for(lambda: delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED, message="second attempt")
    job.refresh_from_db()
    assert (job.status, job.attempts, len(job.error_history)) == (Job.Status.SUCCEEDED, 2, 1)
    assert list(Ledger.objects.values_list("attempt", flat=True)) == [1, 2]


def test_permanent_failure_is_dead_lettered_at_once(received):
    job = emit(permanent)
    assert delivery.deliver(job.pk, "default") == Outcome.DEAD
    job.refresh_from_db()
    assert (job.status, job.attempts, job.max_attempts) == (Job.Status.DEAD, 1, 5)
    assert job.error_history[0]["error"] == "critical_path.exceptions.PermanentFailure: the address does not exist"
    assert received == [("dead", job.pk, "PermanentFailure")]


def test_unknown_side_effect_fails_with_a_clear_error():
    job = make_job(effect="tests.effects.renamed_since")
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    job.refresh_from_db()
    assert "No side effect at 'tests.effects.renamed_since'" in job.last_error


def test_current_job_carries_the_idempotency_key_and_database():
    job = emit(note.using(key="welcome:7", database="other"), "keyed")
    assert delivery.deliver(job.pk, "other") == Outcome.SUCCEEDED
    assert Ledger.objects.using("other").get().idempotency_key == "welcome:7"


def test_side_effect_emitted_by_a_running_job_shares_its_correlation_id():
    job = emit(chain, "next")
    assert delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED
    child = Job.objects.exclude(pk=job.pk).get()
    assert (child.effect, child.args, child.correlation_id) == ("tests.effects.note", ["next"], job.correlation_id)
