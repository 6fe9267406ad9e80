"""The compiled claim and success: the same UPDATEs as ``JobQuerySet.claim`` and ``succeed``, for one job."""

from datetime import timedelta

import pytest

from critical_path.models import Job
from critical_path.store import compiled as claims
from critical_path.store import statements
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def as_stored(job):
    """Every field of ``job`` as Python values, to compare with the row read back through the ORM."""
    return {field.attname: getattr(job, field.attname) for field in Job._meta.concrete_fields}


@pytest.fixture(params=["returning", "read after"])
def returning(request, monkeypatch):
    """Both ways a claim gets its job: from the UPDATE's RETURNING, or read after it (SQLite < 3.35)."""
    if request.param == "read after":
        monkeypatch.setattr(statements, "supports_returning", lambda using: False)
    return request.param


@pytest.mark.parametrize("using", ["default", "other"])
def test_the_compiled_claim_takes_each_job_and_lease_once(using, returning):
    first, second = make_job(using=using), make_job(Job.Status.ENQUEUED, using=using)
    claimed = claims.claim(first.pk, timedelta(seconds=90), using=using)
    assert claims.claim(second.pk, timedelta(hours=2), using=using) is not None
    assert claims.claim(first.pk, timedelta(seconds=90), using=using) is None  # running now: a duplicate is dropped
    for job, lease in ((first, timedelta(seconds=90)), (second, timedelta(hours=2))):
        job.refresh_from_db()
        assert (job.status, job.attempts) == (Job.Status.RUNNING, 1)
        assert job.lease_expires_at - job.started_at == lease
    assert claimed._state.db == using
    assert as_stored(claimed) == as_stored(Job.objects.using(using).get(pk=first.pk))  # as the claim left it


@pytest.mark.parametrize("using", ["default", "other"])
def test_the_claimed_job_carries_every_field_as_the_orm_reads_it(using):
    job = make_job(
        using=using,
        args=[1, "two", {"three": [3.5, None, True]}],
        kwargs={"unicode": "é ✓", "nested": {"a": []}},
        correlation_id="req-1",
        ordering_key="account:7",
        error_history=[{"attempt": 1, "error": "boom"}],
        priority=7,
    )
    claimed = claims.claim(job.pk, timedelta(seconds=90), using=using)
    assert as_stored(claimed) == as_stored(Job.objects.using(using).get(pk=job.pk))
    assert claimed.args == [1, "two", {"three": [3.5, None, True]}]
    assert claimed.started_at.tzinfo is not None


def test_the_compiled_claim_coalesces_like_the_orm_claim(returning):
    older = make_job(effect="tests.effects.recount", coalesce_key="k")
    make_job(effect="tests.effects.recount", coalesce_key="k")
    claimed = claims.claim(older.pk, timedelta(seconds=90), using="default")
    older.refresh_from_db()
    assert (older.status, older.attempts, older.finished_at is not None) == (Job.Status.COALESCED, 0, True)
    assert claimed.status == Job.Status.COALESCED


def test_the_compiled_claim_leaves_a_job_behind_its_ordering_key_line(returning):
    make_job(ordering_key="account:1")
    later = make_job(ordering_key="account:1")
    assert claims.claim(later.pk, timedelta(seconds=90), using="default") is None
    assert Job.objects.get(pk=later.pk).status == Job.Status.PENDING


@pytest.mark.parametrize("using", ["default", "other"])
def test_the_compiled_success_moves_only_the_attempt_that_holds_the_job(using):
    job = make_job(using=using)
    claims.claim(job.pk, timedelta(seconds=90), using=using)
    assert claims.succeed(job.pk, 2, using=using) == 0  # another attempt's outcome: not this one's to record
    assert claims.succeed(job.pk, 1, using=using) == 1
    assert claims.succeed(job.pk, 1, using=using) == 0  # once
    job.refresh_from_db()
    assert (job.status, job.lease_expires_at, job.finished_at is not None) == (Job.Status.SUCCEEDED, None, True)


@pytest.mark.parametrize(
    ("keys", "statements_run"),
    [({}, 1), ({"coalesce_key": "k"}, 2), ({"ordering_key": "account:1"}, 2)],
    ids=["plain", "coalesce key", "ordering key"],
)
def test_a_job_without_keys_is_claimed_by_the_plain_statement_alone(keys, statements_run):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    job = make_job(effect="tests.effects.recount", **keys)
    with CaptureQueriesContext(connection) as queries:
        claimed = claims.claim(job.pk, timedelta(seconds=90), using="default")
    assert (claimed.status, claimed.attempts) == (Job.Status.RUNNING, 1)
    assert len(queries) == statements_run
    assert "EXISTS" not in queries[0]["sql"]  # the plain claim: no subquery for the database to plan
