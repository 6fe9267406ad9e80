"""Each compiled statement of ``critical_path.store.compiled`` is its ORM verb's UPDATE, value for value.

The ORM verb on ``JobQuerySet`` is the definition; ``store`` compiles it once with stand-ins and fills in each
call's values. Both run here on the same row, each in a transaction rolled back, and the SQL the database was
sent (parameters filled in, as Django logs it) must be the same: a stand-in that matched the wrong parameter, or
a value given in the wrong form, would show as a difference.
"""

from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from critical_path.models import Job, claim_values
from critical_path.store import compiled, statements
from tests.factories import make_job

pytestmark = pytest.mark.django_db(databases="__all__")

LEASE = timedelta(minutes=6, seconds=1, microseconds=250)


@pytest.fixture(params=["default", "other"])
def using(request):
    return request.param


@pytest.fixture(params=["returning", "read after"])
def returning(request, monkeypatch):
    """Both forms of the claim: with ``RETURNING``, or read after the UPDATE (SQLite < 3.35)."""
    if request.param == "read after":
        monkeypatch.setattr(statements, "supports_returning", lambda using: False)
    return request.param


def updates_sent(using, run):
    """The UPDATEs ``run`` sends to ``using``, in a transaction rolled back; without any ``RETURNING`` clause."""
    with CaptureQueriesContext(connections[using]) as queries:
        with transaction.atomic(using=using):
            run()
            transaction.set_rollback(True, using=using)
    sent = [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith("UPDATE")]
    return [sql.split(" RETURNING ")[0] for sql in sent]


def orm_jobs(using, pk):
    """The job's row as the compiled claim selects it: on PostgreSQL, committing without waiting for its WAL."""
    jobs = Job.objects.using(using).filter(pk=pk)
    if connections[using].vendor == "postgresql":
        jobs = jobs.filter(compiled.asynchronous_commit())
    return jobs


def test_the_plain_claim_is_the_orm_claim_of_a_job_without_keys(using, returning):
    job = make_job(using=using)
    jobs = orm_jobs(using, job.pk)
    [orm] = updates_sent(using, lambda: jobs.claimable_plain().update(**claim_values(LEASE, plain=True)))
    [plain] = updates_sent(using, lambda: compiled.claim(job.pk, LEASE, using=using))
    assert plain == orm


def test_the_full_claim_is_the_orm_claim(using, returning):
    job = make_job(using=using, ordering_key="account-7")  # the plain claim takes no keyed job: the full one runs
    [orm] = updates_sent(using, lambda: orm_jobs(using, job.pk).claim(LEASE))
    plain, full = updates_sent(using, lambda: compiled.claim(job.pk, LEASE, using=using))
    assert full == orm
    assert plain != orm


def test_the_success_is_the_orm_success(using):
    job = make_job(Job.Status.RUNNING, using=using, attempts=2)
    [orm] = updates_sent(using, lambda: Job.objects.using(using).filter(pk=job.pk).succeed(2))
    [success] = updates_sent(using, lambda: compiled.succeed(job.pk, 2, using=using))
    assert success == orm


@pytest.mark.parametrize("count", [1, 2, 8])
def test_the_dispatchers_mark_is_the_orm_hand_off(using, count):
    # Sizes compiled as they are; a batch between two sizes repeats its last id, which the ORM would drop.
    ids = [make_job(using=using).pk for _ in range(count)]
    [orm] = updates_sent(using, lambda: Job.objects.using(using).filter(pk__in=ids).hand_off())
    [mark] = updates_sent(using, lambda: compiled.hand_off(ids, using=using))
    assert mark == orm


@pytest.mark.skipif(connections["default"].vendor != "postgresql", reason="synchronous_commit is PostgreSQL's")
def test_the_claim_commits_without_waiting_for_its_wal_and_only_its_own_transaction():
    job = make_job()
    connection = connections["default"]
    with transaction.atomic():  # to look inside the claim's transaction before it ends
        assert compiled.claim(job.pk, LEASE, using="default") is not None
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("off",)
        transaction.set_rollback(True)
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)
