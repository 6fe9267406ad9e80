import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from critical_path import IdempotencyConflict
from critical_path.models import Job
from critical_path.outbox import transitions
from critical_path.publishing import dispatcher
from tests.effects import flaky, note
from tests.factories import make_job
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


class Rollback(Exception):
    pass


def status(job):
    return Job.objects.using(job._state.db).get(pk=job.pk).status


def test_after_commit_is_one_insert_and_returns_the_saved_job():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        job = flaky.using(priority=2).after_commit(1)
    [query] = queries.captured_queries
    assert query["sql"].startswith("INSERT INTO")
    stored = Job.objects.get()
    assert job.pk == stored.pk and job._state.db == "default" and not job._state.adding
    # The dispatcher may already have handed the committed job off; the returned copy is the row as inserted.
    assert job.status == Job.Status.PENDING and stored.status in (Job.Status.PENDING, Job.Status.ENQUEUED)
    for field in ("effect", "args", "kwargs", "attempts", "max_attempts", "queue", "priority",
                  "correlation_id", "created_at", "available_at", "idempotency_key", "uuid"):  # fmt: skip
        assert getattr(job, field) == getattr(stored, field), field
    assert (stored.effect, stored.args, stored.max_attempts, stored.priority) == ("tests.effects.flaky", [1], 3, 2)
    assert stored.queue == "critical-path-tests-idle"
    assert stored.available_at == stored.created_at


def test_committed_job_is_handed_off_to_the_broker():
    with transaction.atomic():
        job = note.after_commit("hi")
    wait_for(lambda: status(job) == Job.Status.ENQUEUED, message="enqueued")
    assert Job.objects.get().enqueued_at is not None


def test_rolled_back_job_never_exists():
    with pytest.raises(Rollback), transaction.atomic():
        note.after_commit("never")
        raise Rollback
    assert dispatcher.shutdown()
    assert not Job.objects.exists()


def test_savepoint_rollback_drops_exactly_what_it_emitted():
    with transaction.atomic():
        first = note.after_commit("first")
        with pytest.raises(Rollback), transaction.atomic():
            note.after_commit("inside the savepoint")
            raise Rollback
        later = note.after_commit("later")
    assert sorted(Job.objects.values_list("args", flat=True)) == [["first"], ["later"]]
    # Both surviving jobs are handed off at commit, without waiting for the relay.
    wait_for(lambda: status(first) == status(later) == Job.Status.ENQUEUED, message="both enqueued")


def test_outside_atomic_behaves_like_on_commit():
    job = note.after_commit("autocommit")
    assert Job.objects.filter(pk=job.pk).exists()
    wait_for(lambda: status(job) == Job.Status.ENQUEUED, message="enqueued")


def test_job_on_another_database_joins_that_database_transaction():
    with transaction.atomic(), pytest.raises(Rollback), transaction.atomic(using="other"):
        note.using(database="other").after_commit("rolled back with other")
        raise Rollback
    assert not Job.objects.using("other").exists()
    with pytest.raises(Rollback), transaction.atomic():
        with transaction.atomic(using="other"):
            job = note.using(database="other").after_commit("committed with other")
        raise Rollback  # rolls back default only
    assert job._state.db == "other"
    wait_for(lambda: status(job) == Job.Status.ENQUEUED, message="enqueued on other")
    assert not Job.objects.using("default").exists()


def test_delayed_job_waits_in_the_database():
    with transaction.atomic():
        job = note.using(delay=timedelta(minutes=5)).after_commit("later")
    assert dispatcher.shutdown()
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING
    assert timedelta(minutes=5) <= job.available_at - job.created_at < timedelta(minutes=5, seconds=1)


def test_same_key_and_arguments_return_the_existing_job():
    with transaction.atomic():
        first = note.using(key="welcome:1").after_commit("hi", tag="a")
        again = note.using(key="welcome:1").after_commit("hi", tag="a")
    assert again.pk == first.pk
    assert Job.objects.count() == 1
    assert Job.objects.get().idempotency_key == "welcome:1"


def test_each_job_has_its_own_uuid_as_its_default_idempotency_key():
    with transaction.atomic():
        first, second = note.after_commit("hi"), note.after_commit("hi")
        other_database = note.using(database="other").after_commit("hi")
    stored = {job.pk: job for job in Job.objects.all()}
    assert first.uuid == stored[first.pk].uuid and second.uuid == stored[second.pk].uuid
    assert len({first.uuid, second.uuid, other_database.uuid}) == 3
    assert first.uuid.version == 7 and first.uuid < second.uuid  # time-ordered: the unique index grows at its end
    assert first.effective_idempotency_key == str(first.uuid)
    # Another database's job with the same id gets another key: no key comes back after a reset or elsewhere.
    assert other_database.effective_idempotency_key != first.effective_idempotency_key


def test_a_job_emitted_with_a_key_keeps_it_and_gets_a_uuid_too():
    with transaction.atomic():
        job = note.using(key="welcome:1").after_commit("hi")
    assert job.effective_idempotency_key == "welcome:1"
    assert Job.objects.get().uuid == job.uuid


def test_same_key_with_other_arguments_is_a_conflict_and_the_transaction_goes_on():
    with transaction.atomic():
        note.using(key="welcome:1").after_commit("hi")
        with pytest.raises(IdempotencyConflict, match="already holds the idempotency key 'welcome:1'"):
            note.using(key="welcome:1").after_commit("other")
        with pytest.raises(IdempotencyConflict):
            flaky.using(key="welcome:1").after_commit(1)
        note.after_commit("the transaction is still usable")
    assert Job.objects.count() == 2


def test_concurrent_emitters_of_one_key_both_succeed_with_one_job():
    first_inserted, results, errors = threading.Event(), {}, []

    def emit(name, wait_for_first):
        try:
            if wait_for_first:
                first_inserted.wait(10)
            with transaction.atomic():
                results[name] = note.using(key="shared").after_commit("same").pk
                if not wait_for_first:
                    first_inserted.set()
                    threading.Event().wait(0.3)  # hold the transaction open while the other emits
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=emit, args=("a", False)), threading.Thread(target=emit, args=("b", True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert results["a"] == results["b"]
    assert Job.objects.count() == 1


def test_replay_moves_dead_and_failed_jobs_back_to_pending_once():
    dead = make_job(Job.Status.DEAD, attempts=3, error_history=[{"error": "boom"}], last_error="boom")
    failed = make_job(Job.Status.FAILED, attempts=1)
    succeeded = make_job(Job.Status.SUCCEEDED, attempts=1)
    assert transitions.replay(Job.objects.all()) == 2
    assert transitions.replay(Job.objects.all()) == 0
    dead.refresh_from_db()  # pending, or already enqueued by the dispatcher after the replay's commit
    assert dead.status in (Job.Status.PENDING, Job.Status.ENQUEUED)
    assert (dead.attempts, dead.error_history) == (0, [{"error": "boom"}])
    assert status(succeeded) == Job.Status.SUCCEEDED
    wait_for(lambda: status(dead) == status(failed) == Job.Status.ENQUEUED, message="replayed jobs published")


def test_replay_by_ids_on_another_database():
    job = make_job(Job.Status.DEAD, using="other")
    assert transitions.replay([job.pk], using="other") == 1
    assert status(job) in (Job.Status.PENDING, Job.Status.ENQUEUED)


def test_discard_leaves_running_and_finished_jobs_alone():
    jobs = {state: make_job(state) for state in Job.Status.values}
    assert transitions.discard(Job.objects.all()) == 4
    assert {state: status(job) for state, job in jobs.items()} == {
        "pending": "discarded",
        "enqueued": "discarded",
        "running": "running",
        "succeeded": "succeeded",
        "failed": "discarded",
        "dead": "discarded",
        "discarded": "discarded",
        "coalesced": "coalesced",
    }


def test_a_selection_is_read_a_batch_of_ids_at_a_time_and_later_jobs_are_not_chased():
    dead = [make_job(Job.Status.DEAD) for _ in range(5)]
    make_job(Job.Status.SUCCEEDED)
    batches, late = [], []

    def during_the_batch(database, moved):
        batches.append(moved)
        if not late:  # dead-lettered while the replay runs: not among the jobs selected when it began
            late.append(make_job(Job.Status.DEAD))

    with CaptureQueriesContext(connection) as queries:
        assert transitions.replay(Job.objects.dead(), batch_size=2, on_batch=during_the_batch) == 5
    assert batches == [[job.pk for job in dead[:2]], [job.pk for job in dead[2:4]], [dead[4].pk]]
    assert status(late[0]) == Job.Status.DEAD
    reads = [query["sql"] for query in queries if " ORDER BY " in query["sql"]]  # the selection's, not the batches'
    assert len(reads) == 4 and all(" LIMIT " in sql for sql in reads)  # the newest id, then a keyset page per batch


def test_ids_are_taken_from_an_iterable_a_batch_at_a_time():
    dead = [make_job(Job.Status.DEAD) for _ in range(3)]
    taken = []

    def ids():
        for job in dead:
            taken.append(job.pk)
            yield job.pk

    progress = []
    assert transitions.discard(ids(), batch_size=2, on_batch=lambda database, moved: progress.append(len(taken))) == 3
    assert progress == [2, 3]


def test_a_sliced_selection_is_moved_as_sliced():
    dead = [make_job(Job.Status.DEAD) for _ in range(3)]
    assert transitions.discard(Job.objects.dead().order_by("pk")[:2], batch_size=1) == 2
    assert [status(job) for job in dead] == [Job.Status.DISCARDED, Job.Status.DISCARDED, Job.Status.DEAD]
