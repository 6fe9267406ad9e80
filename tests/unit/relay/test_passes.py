"""One relay pass over fabricated rows (the River/Oban way), and the relay_outbox command."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from critical_path.exceptions import RelayBusy
from critical_path.models import Job
from critical_path.relay import passes
from tests.factories import make_job
from tests.helpers import at_once

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def ago(seconds):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def rows():
    """One row per case, named; the grace period is 30 s (the default)."""
    return {
        "pending, hand-off lost": make_job(created_at=(old := ago(60)), available_at=old),
        "pending, dispatcher's turn": make_job(created_at=(young := ago(5)), available_at=young),
        "delayed, due": make_job(created_at=ago(25), available_at=ago(20)),
        "delayed, not due": make_job(created_at=ago(5), available_at=ago(-60)),
        "failed, backoff over": make_job(Job.Status.FAILED, attempts=1, created_at=ago(60), available_at=ago(20)),
        "failed, backing off": make_job(Job.Status.FAILED, attempts=1, created_at=ago(60), available_at=ago(-60)),
        "enqueued": make_job(Job.Status.ENQUEUED, created_at=ago(60), available_at=ago(60)),
        "running": make_job(Job.Status.RUNNING, created_at=ago(60), available_at=ago(60)),
        "succeeded": make_job(Job.Status.SUCCEEDED, created_at=ago(60), available_at=ago(60)),
        "dead": make_job(Job.Status.DEAD, created_at=ago(60), available_at=ago(60)),
        # Handed off ahead of time (enqueued_at = available_at: the message carries the due time).
        "timed retry, just due": timed(
            make_job(Job.Status.FAILED, attempts=1, created_at=ago(60), available_at=ago(5))
        ),
        "timed retry, unclaimed past the grace": timed(
            make_job(Job.Status.FAILED, attempts=1, created_at=ago(90), available_at=ago(40))
        ),
        "timed delay, just due": timed(make_job(created_at=ago(20), available_at=ago(5))),
        # Due before the relay's next pass (RELAY_INTERVAL, 5 s, and a second): published with its due time.
        "delayed, due before the next pass": make_job(created_at=ago(100), available_at=ago(-3)),
        "failed, due before the next pass": make_job(Job.Status.FAILED, attempts=1, available_at=ago(-4)),
        "timed delay, due before the next pass": timed(make_job(created_at=ago(100), available_at=ago(-3))),
    }


def timed(job):
    """Mark ``job`` as the dispatcher marks a timed hand-off it published."""
    from critical_path.publishing import dispatcher
    from critical_path.publishing.handoff import Handoff

    assert dispatcher.mark_timed(Handoff("default", job.pk, job.effect, job.queue, 0, eta=job.available_at)) == 1
    job.refresh_from_db()
    assert job.enqueued_at == job.available_at
    return job


def test_one_pass_publishes_exactly_what_is_due(rows):
    result = passes.run_once("default")
    published = {name for name, job in rows.items() if job.pk in result.published_ids}
    soon = {"delayed, due before the next pass", "failed, due before the next pass"}
    assert published == {
        "pending, hand-off lost", "delayed, due", "failed, backoff over", "timed retry, unclaimed past the grace", *soon
    }  # fmt: skip
    assert result.published == 6 and not result.broker_down
    states = dict(Job.objects.values_list("pk", "status"))
    for name in published - soon:
        assert states[rows[name].pk] == Job.Status.ENQUEUED
    for name in soon:  # still waiting for their time, their message carrying it
        job = Job.objects.get(pk=rows[name].pk)
        assert job.status == rows[name].status and job.enqueued_at == job.available_at
    assert states[rows["pending, dispatcher's turn"].pk] == Job.Status.PENDING
    assert states[rows["failed, backing off"].pk] == Job.Status.FAILED
    assert Job.objects.get(pk=rows["failed, backoff over"].pk).attempts == 1  # publishing costs no attempt


def test_the_relay_knows_when_the_next_job_falls_due_and_wakes_for_it():
    assert passes.next_due_in("default") is None
    make_job(created_at=ago(1), available_at=ago(-40))
    make_job(Job.Status.FAILED, attempts=1, available_at=ago(-3))
    timed(make_job(Job.Status.FAILED, attempts=1, available_at=ago(-1)))  # its message will start it
    make_job(Job.Status.FAILED, attempts=1, available_at=ago(10))  # due already: this pass's
    assert 2 < passes.next_due_in("default") <= 3
    relay = passes.Relay(["default", "other"])
    assert 2 < relay._until_next_due(5.0) <= 3.1
    assert relay._until_next_due(0.5) == 0.5


def test_a_timed_hand_off_is_not_marked_once_the_job_has_another_due_time():
    """A worker claimed the job at its time and it failed again before the dispatcher marked the first message."""
    from critical_path.publishing import dispatcher
    from critical_path.publishing.handoff import Handoff

    job = make_job(Job.Status.FAILED, attempts=1, available_at=ago(-10))
    first = Handoff("default", job.pk, job.effect, job.queue, 0, eta=job.available_at)
    Job.objects.filter(pk=job.pk).update(attempts=2, available_at=ago(-30))
    assert dispatcher.mark_timed(first) == 0
    assert Job.objects.get(pk=job.pk).enqueued_at is None


def test_pass_works_in_batches():
    for _ in range(5):
        make_job(created_at=ago(60), available_at=ago(60))
    assert passes.run_once("default", batch_size=2).published == 5
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.ENQUEUED}


def test_relays_side_by_side_publish_each_job_once():
    """PostgreSQL: both relays share the rows (SKIP LOCKED). SQLite: the second is refused while the first runs."""
    jobs = [make_job(created_at=ago(60), available_at=ago(60)).pk for _ in range(40)]
    outcomes = at_once(*[lambda: passes.run_once("default", batch_size=5)] * 2)
    results = [outcome for outcome in outcomes if isinstance(outcome, passes.PassResult)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, RelayBusy)]
    assert len(results) + len(refused) == 2, outcomes
    published = [pk for result in results for pk in result.published_ids]
    assert sorted(published) == sorted(jobs)
    if connections["default"].vendor == "postgresql":
        assert not refused


def test_command_relays_every_database_once():
    make_job(created_at=ago(60), available_at=ago(60))
    make_job(using="other", created_at=ago(60), available_at=ago(60))
    out = StringIO()
    call_command("relay_outbox", "--once", stdout=out)
    assert out.getvalue().splitlines() == [
        "default: 1 published, 0 republished, 0 rescued, 0 dead-lettered.",
        "other: 1 published, 0 republished, 0 rescued, 0 dead-lettered.",
    ]


def test_command_limits_itself_to_the_named_database():
    make_job(using="other", created_at=ago(60), available_at=ago(60))
    out = StringIO()
    call_command("relay_outbox", "--once", "--database", "default", stdout=out)
    assert out.getvalue() == "default: 0 published, 0 republished, 0 rescued, 0 dead-lettered.\n"


def test_command_refuses_an_unknown_database():
    with pytest.raises(CommandError, match=r"Unknown database alias 'nope'; known: default, other\."):
        call_command("relay_outbox", "--once", "--database", "nope")


def test_command_refuses_a_bad_interval():
    with pytest.raises(CommandError, match="expected a positive number, got '0'"):
        call_command("relay_outbox", "--interval", "0")
