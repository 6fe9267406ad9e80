"""``batch()``: one INSERT for the block's emits, with the outbox's guarantees unchanged."""

from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from critical_path import IdempotencyConflict, batch
from critical_path.models import Job
from critical_path.publishing import dispatcher
from critical_path.store.insert import MAX_ROWS_PER_INSERT
from tests.effects import flaky, note
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


class Rollback(Exception):
    pass


def stored_args(using="default"):
    return sorted(Job.objects.using(using).values_list("args", flat=True))


def status(job):
    return Job.objects.using(job._state.db).get(pk=job.pk).status


def test_emits_of_a_batch_are_one_insert_when_it_exits():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with batch():
            first = note.after_commit("a")
            second = flaky.using(priority=2).after_commit(1)
            third = note.after_commit("c", tag="t")
            assert first.pk is None and not queries.captured_queries
        [query] = queries.captured_queries
    assert query["sql"].startswith("INSERT INTO") and query["sql"].count("), (") == 2
    stored = {job.pk: job for job in Job.objects.all()}
    assert first.pk < second.pk < third.pk
    for job in (first, second, third):
        assert not job._state.adding and job._state.db == "default"
        for field in ("effect", "args", "kwargs", "priority", "queue", "created_at", "available_at", "correlation_id"):
            assert getattr(job, field) == getattr(stored[job.pk], field), field
    assert (third.args, third.kwargs) == (["c"], {"tag": "t"})


def test_a_batch_outside_atomic_is_its_own_transaction_and_hands_off_at_commit():
    with batch():
        job = note.after_commit("alone")
        assert connection.in_atomic_block
    assert not connection.in_atomic_block
    wait_for(lambda: status(job) == Job.Status.ENQUEUED, message="enqueued")


def test_a_batch_that_raises_writes_nothing_and_dooms_the_transaction():
    with transaction.atomic():
        note.after_commit("before the batch")
        with pytest.raises(Rollback), batch():
            note.after_commit("in the batch")
            raise Rollback
        # atomic(savepoint=False) semantics: the transaction can only roll back now.
        with pytest.raises(TransactionManagementError):
            note.after_commit("after the failed batch")
        transaction.set_rollback(True)
    assert dispatcher.shutdown()
    assert not Job.objects.exists()


def test_a_rolled_back_savepoint_inside_a_batch_drops_exactly_what_it_emitted():
    with transaction.atomic(), batch():
        note.after_commit("batched before")
        with pytest.raises(Rollback), transaction.atomic():
            inside = note.after_commit("inside the savepoint")
            assert inside.pk is not None  # written at once: its savepoint must be able to drop it
            raise Rollback
        between = note.after_commit("batched between")
        assert between.pk is None  # at the batch's level again
        with transaction.atomic():
            nested = note.after_commit("in a released savepoint")
        note.after_commit("batched after")
    assert stored_args() == [
        ["batched after"],
        ["batched before"],
        ["batched between"],
        ["in a released savepoint"],
    ]
    assert nested.pk is not None


def test_emits_on_another_database_are_written_at_once():
    with transaction.atomic(), transaction.atomic(using="other"), batch():
        here = note.after_commit("default")
        there = note.using(database="other").after_commit("other")
        assert here.pk is None and there.pk is not None
    assert stored_args() == [["default"]] and stored_args("other") == [["other"]]


def test_a_batch_on_another_database():
    with transaction.atomic(using="other"), batch(using="other"):
        job = note.using(database="other").after_commit("other")
        assert job.pk is None
    assert job._state.db == "other" and stored_args("other") == [["other"]]


def test_a_nested_batch_joins_the_outer_one():
    with CaptureQueriesContext(connection) as queries, batch():
        note.after_commit("outer")
        with batch():
            inner = note.after_commit("inner")
        assert inner.pk is None
    assert [q["sql"][:11] for q in queries.captured_queries if "INSERT" in q["sql"]] == ["INSERT INTO"]
    assert stored_args() == [["inner"], ["outer"]]


def test_delayed_jobs_in_a_batch_wait_for_the_relay_and_the_others_are_handed_off():
    with batch():
        later = note.using(delay=timedelta(minutes=5)).after_commit("later")
        now = note.after_commit("now")
    wait_for(lambda: status(now) == Job.Status.ENQUEUED, message="enqueued")
    assert dispatcher.shutdown()
    assert status(later) == Job.Status.PENDING
    assert timedelta(minutes=5) <= later.available_at - later.created_at < timedelta(minutes=5, seconds=1)


def test_idempotency_keys_in_a_batch():
    existing = note.using(key="stored").after_commit("same")
    with batch():
        again = note.using(key="stored").after_commit("same")
        first = note.using(key="twice").after_commit("x")
        between = note.after_commit("between")
        second = note.using(key="twice").after_commit("x")
        last = note.after_commit("last")
    assert again.pk == existing.pk and again.created_at == existing.created_at
    assert first.pk == second.pk and first.pk is not None
    assert between.pk < last.pk
    assert Job.objects.count() == 4


def test_an_idempotency_conflict_in_a_batch_raises_at_its_end_and_rolls_back():
    note.using(key="stored").after_commit("same")
    with pytest.raises(IdempotencyConflict, match="already holds the idempotency key 'stored'"):
        with batch():
            note.after_commit("lost with the batch")
            note.using(key="stored").after_commit("other")
    assert stored_args() == [["same"]]


def test_a_big_batch_is_written_in_chunks():
    count = MAX_ROWS_PER_INSERT * 2 + 5
    with CaptureQueriesContext(connection) as queries, batch():
        jobs = [note.after_commit(str(index)) for index in range(count)]
    assert len([q for q in queries.captured_queries if q["sql"].startswith("INSERT")]) == 3
    assert [job.args for job in jobs] == [[str(index)] for index in range(count)]
    assert len({job.pk for job in jobs}) == count == Job.objects.count()


def test_a_batch_that_django_marked_for_rollback_writes_nothing():
    with transaction.atomic(), batch():
        note.after_commit("doomed")
        transaction.set_rollback(True)
    assert not Job.objects.exists()
    assert not connections["default"].in_atomic_block
