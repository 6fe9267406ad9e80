"""prune_outbox: finished jobs only, in batches, dead letters only by name."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from critical_path.models import Job
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def prune(*args):
    out = io.StringIO()
    call_command("prune_outbox", *args, stdout=out)
    return out.getvalue()


def ago(**delta):
    return timezone.now() - timedelta(**delta)


@pytest.fixture
def jobs():
    """One old job in each status (finished ones 10 days ago), and a recent succeeded one."""
    old = {status: make_job(status, finished_at=ago(days=10), created_at=ago(days=11)) for status in Job.Status.values}
    old["recent"] = make_job(Job.Status.SUCCEEDED, finished_at=ago(hours=1))
    return old


def remaining(jobs):
    ids = set(Job.objects.values_list("pk", flat=True))
    return {name for name, job in jobs.items() if job.pk in ids}


def test_prunes_old_succeeded_discarded_and_coalesced_jobs_and_leaves_live_ones_alone(jobs):
    assert "Deleted 3 jobs (coalesced, discarded, succeeded)" in prune("--older-than", "7d")
    assert remaining(jobs) == {"pending", "enqueued", "running", "failed", "dead", "recent"}


def test_dead_jobs_only_when_named(jobs):
    assert "Deleted 1 job (dead)" in prune("--older-than", "1w", "--status", "dead")
    assert "dead" not in remaining(jobs) and "succeeded" in remaining(jobs)


@pytest.mark.parametrize("status", ["pending", "enqueued", "running", "failed"])
def test_refuses_live_statuses(jobs, status):
    with pytest.raises(CommandError, match=f"Refusing to prune jobs that are {status}"):
        prune("--older-than", "7d", "--status", status)
    assert len(remaining(jobs)) == len(jobs)


def test_durations(jobs):
    assert "Deleted 0 jobs" in prune("--older-than", "2w")
    assert "Deleted 2 jobs" in prune("--older-than", "30m", "--status", "succeeded")
    assert remaining(jobs) == {"pending", "enqueued", "running", "failed", "dead", "discarded", "coalesced"}


def test_dry_run_counts_and_deletes_nothing(jobs):
    assert "Would delete 3 jobs" in prune("--older-than", "12h", "--dry-run")
    assert len(remaining(jobs)) == len(jobs)


def test_deletes_in_batches_of_one_statement():
    for _ in range(7):
        make_job(Job.Status.SUCCEEDED, finished_at=ago(days=10))
    with CaptureQueriesContext(connections["default"]) as queries:
        assert "Deleted 7 jobs" in prune("--older-than", "1d", "--batch-size", "3")
    deletes = [query["sql"] for query in queries if query["sql"].startswith("DELETE")]
    assert len(deletes) == 3 and all("LIMIT 3" in sql for sql in deletes)
    assert len(queries) == 3 * 3  # BEGIN, DELETE, COMMIT per batch


def test_database_option():
    job = make_job(Job.Status.SUCCEEDED, using="other", finished_at=ago(days=10))
    make_job(Job.Status.SUCCEEDED, finished_at=ago(days=10))
    assert "Deleted 1 job" in prune("--older-than", "1d", "--database", "other")
    assert not Job.objects.using("other").filter(pk=job.pk).exists() and Job.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "7days"], "expected a duration such as 30m"),
        (["--older-than", "7d", "--database", "nope"], "Unknown database alias 'nope'"),
        ([], "the following arguments are required: --older-than"),
    ],
)
def test_bad_arguments_are_refused_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        prune(*args)
