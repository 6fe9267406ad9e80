"""The compiled claim: the same UPDATE as ``JobQuerySet.claim``, for one job, with its id and lease filled in."""

from datetime import timedelta

import pytest

from critical_path import claims
from critical_path.models import Job
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.mark.parametrize("using", ["default", "other"])
def test_the_compiled_claim_takes_each_job_and_lease_once(using):
    first, second = make_job(using=using), make_job(Job.Status.ENQUEUED, using=using)
    assert claims.claim(first.pk, timedelta(seconds=90), using=using) == 1
    assert claims.claim(second.pk, timedelta(hours=2), using=using) == 1
    assert claims.claim(first.pk, timedelta(seconds=90), using=using) == 0  # running now: a duplicate is dropped
    for job, lease in ((first, timedelta(seconds=90)), (second, timedelta(hours=2))):
        job.refresh_from_db()
        assert (job.status, job.attempts) == (Job.Status.RUNNING, 1)
        assert job.lease_expires_at - job.started_at == lease


def test_the_compiled_claim_coalesces_like_the_orm_claim():
    older = make_job(effect="tests.effects.recount", coalesce_key="k")
    make_job(effect="tests.effects.recount", coalesce_key="k")
    assert claims.claim(older.pk, timedelta(seconds=90), using="default") == 1
    older.refresh_from_db()
    assert (older.status, older.attempts, older.finished_at is not None) == (Job.Status.COALESCED, 0, True)


def test_the_compiled_claim_leaves_a_job_behind_its_ordering_key_line():
    make_job(ordering_key="account:1")
    later = make_job(ordering_key="account:1")
    assert claims.claim(later.pk, timedelta(seconds=90), using="default") == 0
