"""@side_effect(atomic=True): the function's writes on the job's database commit with its success, or not at all."""

import pytest
from django.db import transaction

from critical_path.models import Job
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome
from tests.effects import writes_atomically
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture(params=["default", "other"])
def database(request):
    return request.param


def emit(database, outcome):
    with transaction.atomic(using=database):
        return writes_atomically.using(database=database).after_commit(outcome)


def test_writes_commit_with_the_success_mark(database):
    job = emit(database, "return")
    assert delivery.deliver(job.pk, database) == Outcome.SUCCEEDED
    job.refresh_from_db(using=database)
    assert job.status == Job.Status.SUCCEEDED
    [row] = Ledger.objects.using(database).filter(name="writes_atomically")
    assert row.value == {"in_atomic_block": True}
    child = Job.objects.using(database).exclude(pk=job.pk).get()  # handed off when the transaction committed
    assert (child.effect, child.args) == ("tests.effects.note", ["emitted by writes_atomically"])


def test_failure_rolls_the_writes_back_and_is_recorded_outside_the_transaction(database):
    job = emit(database, "raise")
    assert delivery.deliver(job.pk, database) == Outcome.FAILED
    job.refresh_from_db(using=database)
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert job.error_history[0]["error"] == "RuntimeError: failed after its writes"
    assert not Ledger.objects.using(database).exists()
    assert list(Job.objects.using(database).values_list("pk", flat=True)) == [job.pk]  # no emitted side effect


def test_lost_lease_rolls_the_writes_back(database):
    job = emit(database, "lose lease")
    assert delivery.deliver(job.pk, database) == Outcome.LOST_LEASE
    assert not Ledger.objects.using(database).exists()
    assert list(Job.objects.using(database).values_list("pk", flat=True)) == [job.pk]
    job.refresh_from_db(using=database)
    assert (job.status, job.attempts, job.finished_at) == (Job.Status.RUNNING, 1, None)
