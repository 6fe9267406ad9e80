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
    }


def test_one_pass_publishes_exactly_what_is_due(rows):
    result = passes.run_once("default")
    published = {name for name, job in rows.items() if job.pk in result.published_ids}
    assert published == {"pending, hand-off lost", "delayed, due", "failed, backoff over"}
    assert result.published == 3 and not result.broker_down
    states = dict(Job.objects.values_list("pk", "status"))
    for name in published:
        assert states[rows[name].pk] == Job.Status.ENQUEUED
    assert states[rows["pending, dispatcher's turn"].pk] == Job.Status.PENDING
    assert states[rows["failed, backing off"].pk] == Job.Status.FAILED
    assert Job.objects.get(pk=rows["failed, backoff over"].pk).attempts == 1  # publishing costs no attempt


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
