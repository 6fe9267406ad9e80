"""Ordering keys: jobs sharing a key run one at a time in id order; a blocked job waits and is handed off in turn."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models.functions import Now
from django.urls import reverse

from critical_path.exceptions import InvalidOption
from critical_path.models import Job
from critical_path.outbox import transitions
from critical_path.publishing import dispatcher
from critical_path.relay import passes
from critical_path.testing import run_pending_jobs
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome
from tests.effects import always_fails, flaky, note
from tests.factories import make_job
from tests.testapp.models import Ledger
from tests.unit.test_admin import ON_CALL, client_for, staff

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def emit(*calls):
    """Emit ``(effect, args)`` pairs in one transaction; return the jobs, refreshed, their hand-off done."""
    with transaction.atomic():
        jobs = [effect.after_commit(*args) for effect, args in calls]
    assert dispatcher.shutdown(timeout=10)  # published and marked enqueued: no race with the test's own UPDATEs
    for job in jobs:
        job.refresh_from_db()
    return jobs


def ordered(key, *texts):
    return [(note.using(ordering_key=key), (text,)) for text in texts]


def runs():
    return [row.value["text"] for row in Ledger.objects.filter(name="note").order_by("pk")]


def status(job):
    job.refresh_from_db()
    return job.status


@pytest.mark.parametrize("value", ["", "   ", "k" * 256, 42])
def test_an_invalid_ordering_key_is_refused_at_emit(value):
    with pytest.raises(InvalidOption, match="ordering_key"):
        note.using(ordering_key=value)


def test_the_ordering_key_is_stored_and_jobs_without_one_have_none():
    keyed, plain = emit((note.using(ordering_key="account:7"), ("a",)), (note, ("b",)))
    assert (keyed.ordering_key, plain.ordering_key) == ("account:7", None)


def test_a_job_waits_for_the_jobs_of_its_key_before_it_then_runs_when_handed_off(settings):
    first, second, third = emit(*ordered("account:1", "first", "second", "third"))
    Job.objects.filter(pk__in=[first.pk, second.pk, third.pk]).update(status=Job.Status.ENQUEUED, enqueued_at=Now())

    assert delivery.deliver(third.pk, "default") == Outcome.SKIPPED
    assert delivery.deliver(second.pk, "default") == Outcome.SKIPPED
    # Their messages are gone: they wait as pending, and the relay leaves them alone.
    assert (status(second), status(third)) == (Job.Status.PENDING, Job.Status.PENDING)
    second.refresh_from_db()
    assert second.enqueued_at is None
    relay_ids = set(passes.due_jobs("default").filter(created_at__lte=Now()).values_list("pk", flat=True))
    assert {second.pk, third.pk}.isdisjoint(relay_ids)

    settings.CRITICAL_PATH_EAGER = True  # the hand-off delivers in this process
    assert delivery.deliver(first.pk, "default") == Outcome.SUCCEEDED
    assert runs() == ["first", "second", "third"]
    assert {status(job) for job in (first, second, third)} == {Job.Status.SUCCEEDED}


def test_jobs_of_one_transaction_run_in_emit_order_eagerly(settings):
    settings.CRITICAL_PATH_EAGER = True
    emit(*ordered("account:1", "a", "b", "c"), (note, ("unkeyed",)), *ordered("account:1", "d"))
    # Each success hands the next job of its key off at once (eagerly: runs it), ahead of the unkeyed one.
    assert runs() == ["a", "b", "c", "d", "unkeyed"]


def test_a_failed_and_retrying_job_keeps_the_next_ones_waiting(settings):
    failing, after = emit((flaky.using(ordering_key="account:2"), (1,)), *ordered("account:2", "after"))
    assert delivery.deliver(failing.pk, "default") == Outcome.FAILED
    assert delivery.deliver(after.pk, "default") == Outcome.SKIPPED
    assert run_pending_jobs() == []  # it leaves the waiting job behind the failed one
    assert status(after) == Job.Status.PENDING

    settings.CRITICAL_PATH_EAGER = True
    Job.objects.filter(pk=failing.pk).update(available_at=Now())
    assert delivery.deliver(failing.pk, "default") == Outcome.SUCCEEDED
    assert (status(failing), status(after)) == (Job.Status.SUCCEEDED, Job.Status.SUCCEEDED)


def test_a_dead_job_blocks_its_key_until_discarded(settings):
    dead, after = emit((always_fails.using(ordering_key="account:3"), ()), *ordered("account:3", "after"))
    run_pending_jobs(retries=True)
    assert status(dead) == Job.Status.DEAD
    assert delivery.deliver(after.pk, "default") == Outcome.SKIPPED
    assert status(after) == Job.Status.PENDING
    Job.objects.filter(pk=after.pk).update(created_at=Now() - timedelta(hours=1))  # past the relay's grace
    assert not passes.due_jobs("default").filter(pk=after.pk).exists()

    settings.CRITICAL_PATH_EAGER = True
    assert transitions.discard([dead.pk]) == 1
    assert status(after) == Job.Status.SUCCEEDED
    assert runs() == ["after"]


def test_a_replayed_dead_job_runs_before_the_ones_it_blocked(settings):
    dead = make_job(Job.Status.DEAD, args=["replayed"], attempts=3, ordering_key="account:4")
    [after] = emit(*ordered("account:4", "after"))
    assert delivery.deliver(after.pk, "default") == Outcome.SKIPPED

    settings.CRITICAL_PATH_EAGER = True
    assert transitions.replay([dead.pk]) == 1
    assert runs() == ["replayed", "after"]


def test_the_relay_publishes_a_waiting_job_whose_turn_came_when_the_hand_off_was_lost():
    first, second = emit(*ordered("account:5", "first", "second"))
    Job.objects.filter(pk=first.pk).update(status=Job.Status.SUCCEEDED)  # its worker died before handing off
    Job.objects.filter(pk=second.pk).update(status=Job.Status.PENDING, created_at=Now() - timedelta(hours=1))
    assert list(passes.due_jobs("default").filter(pk__in=[first.pk, second.pk]).values_list("pk", flat=True)) == [
        second.pk
    ]


def test_jobs_with_different_keys_or_none_run_side_by_side():
    a1, a2 = emit(*ordered("account:a", "a1", "a2"))
    [b1] = emit(*ordered("account:b", "b1"))
    [plain] = emit((note, ("plain",)))
    lease = timedelta(minutes=5)
    assert Job.objects.filter(pk=a1.pk).claim(lease) == 1  # a1 is running
    assert Job.objects.filter(pk=a2.pk).claim(lease) == 0
    assert Job.objects.filter(pk=b1.pk).claim(lease) == 1
    assert Job.objects.filter(pk=plain.pk).claim(lease) == 1


def test_a_job_committed_late_waits_while_a_later_job_of_its_key_runs():
    # The lower id's transaction committed after the higher id's job had started: one at a time still.
    late = make_job(ordering_key="account:6")
    running = make_job(Job.Status.RUNNING, ordering_key="account:6", attempts=1)
    lease = timedelta(minutes=5)
    assert Job.objects.filter(pk=late.pk).claim(lease) == 0
    Job.objects.filter(pk=running.pk).succeed(1)
    assert Job.objects.filter(pk=late.pk).claim(lease) == 1


def test_a_dropped_message_for_an_unkeyed_job_changes_nothing():
    job = make_job(Job.Status.ENQUEUED, enqueued_at=Now(), available_at=Now() + timedelta(hours=1))
    assert delivery.deliver(job.pk, "default") == Outcome.SKIPPED
    assert status(job) == Job.Status.ENQUEUED


def test_the_admin_names_the_job_a_waiting_job_waits_for():
    dead = make_job(Job.Status.DEAD, attempts=3, ordering_key="account:8")
    waiting = make_job(ordering_key="account:8")
    client = client_for(staff("operator", *ON_CALL))
    page = client.get(reverse("admin:critical_path_job_change", args=[waiting.pk])).content.decode()
    assert "account:8" in page
    assert f"#{dead.pk}</a>" in page
    assert "until it is replayed or discarded" in page
    page = client.get(reverse("admin:critical_path_job_change", args=[dead.pk])).content.decode()
    assert "until it is replayed or discarded" not in page
