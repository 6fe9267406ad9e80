"""Coalescing: a claimed job that a newer equal job, not yet started, absorbs is not run."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction

from critical_path.exceptions import InvalidOption
from critical_path.models import Job
from critical_path.testing import run_pending_jobs
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome
from tests.effects import note, recount
from tests.helpers import at_once, wait_for
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def emit(effect, *args, **kwargs):
    with transaction.atomic():
        return effect.after_commit(*args, **kwargs)


def status(job):
    job.refresh_from_db()
    return job.status


def runs():
    return [entry.value for entry in Ledger.objects.filter(name="recount").order_by("pk")]


def test_an_older_job_is_absorbed_by_a_newer_pending_one():
    older, newer = emit(recount, "day"), emit(recount, "day")
    assert older.coalesce_key == newer.coalesce_key is not None
    assert delivery.deliver(older.pk, "default") == Outcome.COALESCED
    older.refresh_from_db()
    assert (older.status, older.attempts, older.started_at, older.lease_expires_at) == ("coalesced", 0, None, None)
    assert older.finished_at is not None
    assert delivery.deliver(older.pk, "default") == Outcome.SKIPPED  # final: a second message is dropped
    assert delivery.deliver(newer.pk, "default") == Outcome.SUCCEEDED
    assert runs() == [{"scope": "day", "total": None}]


def test_an_enqueued_newer_job_absorbs_too_and_a_failed_older_one_is_absorbed():
    older, newer = emit(recount, "day"), emit(recount, "day")
    Job.objects.filter(pk=older.pk).update(status=Job.Status.FAILED, attempts=1)
    Job.objects.filter(pk=newer.pk).update(status=Job.Status.ENQUEUED)
    assert delivery.deliver(older.pk, "default") == Outcome.COALESCED
    older.refresh_from_db()
    assert (older.status, older.attempts) == ("coalesced", 1)


@pytest.mark.parametrize("newer_status", ["running", "succeeded", "failed", "dead", "discarded", "coalesced"])
def test_a_newer_job_that_started_or_ended_absorbs_nothing(newer_status):
    older, newer = emit(recount, "day"), emit(recount, "day")
    Job.objects.filter(pk=newer.pk).update(status=newer_status)
    assert delivery.deliver(older.pk, "default") == Outcome.SUCCEEDED


def test_a_newer_job_not_yet_due_absorbs_nothing():
    older = emit(recount, "day")
    emit(recount.using(delay=timedelta(hours=1)), "day")
    assert delivery.deliver(older.pk, "default") == Outcome.SUCCEEDED


def test_a_newer_job_never_absorbs_an_older_one_the_other_way_round():
    older, newer = emit(recount, "day"), emit(recount, "day")
    assert delivery.deliver(newer.pk, "default") == Outcome.SUCCEEDED
    assert delivery.deliver(older.pk, "default") == Outcome.SUCCEEDED  # the newer one started first


def test_other_arguments_other_side_effects_and_keyless_jobs_are_independent():
    day = emit(recount, "day")
    emit(recount, "week")  # other arguments, other key
    plain = emit(note, "x")
    emit(note, "x")  # no coalescing declared
    assert plain.coalesce_key is None
    assert delivery.deliver(day.pk, "default") == Outcome.SUCCEEDED
    assert delivery.deliver(plain.pk, "default") == Outcome.SUCCEEDED


def test_the_derived_key_ignores_keyword_and_dict_order():
    first = emit(recount, {"a": 1, "b": 2}, total=3)
    second = emit(recount, {"b": 2, "a": 1}, total=3)
    third = emit(recount, {"a": 1, "b": 2}, total=4)
    assert first.coalesce_key == second.coalesce_key != third.coalesce_key


def test_a_coalesce_key_joins_jobs_whatever_their_arguments_and_the_newest_runs():
    for total in range(5):
        emit(recount.using(coalesce_key="account:42"), "account", total=total)
    delivered = run_pending_jobs()
    assert [run.outcome for run in delivered] == [Outcome.COALESCED] * 4 + [Outcome.SUCCEEDED]
    assert runs() == [{"scope": "account", "total": 4}]


def test_a_coalesce_key_makes_any_side_effect_coalesce():
    older = emit(note.using(coalesce_key="k"), "first")
    emit(note.using(coalesce_key="k"), "second")
    assert delivery.deliver(older.pk, "default") == Outcome.COALESCED


@pytest.mark.parametrize("value", ["", " ", "x" * 256, 42])
def test_a_bad_coalesce_key_is_refused(value):
    with pytest.raises(InvalidOption, match="coalesce_key must be a non-empty str"):
        recount.using(coalesce_key=value)


def test_coalesce_must_be_a_bool():
    from critical_path import side_effect

    with pytest.raises(InvalidOption, match="coalesce must be True or False"):
        side_effect(coalesce="yes")(status)


def test_coalescing_survives_batch_inserts():
    from critical_path import batch

    with transaction.atomic(), batch():
        for total in range(3):
            recount.using(coalesce_key="day").after_commit("day", total=total)
    delivered = run_pending_jobs()
    assert [run.outcome for run in delivered] == [Outcome.COALESCED] * 2 + [Outcome.SUCCEEDED]
    assert runs() == [{"scope": "day", "total": 2}]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_a_burst_from_concurrent_emitters_runs_a_few_times_and_the_last_payload_runs():
    """Emitters in threads, each in its own long transaction, while workers claim: nobody waits on anybody."""
    emitters, per_emitter = 8, 25
    stop = threading.Event()
    counter = iter(range(10**9))
    lock = threading.Lock()
    emit_seconds = []

    def emitter():
        for _ in range(per_emitter):
            with lock:
                total = next(counter)
            started = time.perf_counter()
            with transaction.atomic():
                recount.using(coalesce_key="burst").after_commit("burst", total=total)
                time.sleep(0.002)  # the rest of the request's transaction, holding its row
            emit_seconds.append(time.perf_counter() - started)
        return "emitted"

    def worker():
        delivered = []
        while not stop.is_set():
            due = Job.objects.filter(status__in=["pending", "enqueued"], effect=recount.path)
            due = list(due.values_list("pk", flat=True)[:20])
            for pk in due:
                delivered.append(delivery.deliver(pk, "default"))
        connections.close_all()
        return delivered

    delivered = []
    workers = [threading.Thread(target=lambda: delivered.extend(worker())) for _ in range(2)]
    for thread in workers:
        thread.start()
    try:
        assert at_once(*[emitter] * emitters) == ["emitted"] * emitters
        live = Job.objects.filter(effect=recount.path, status__in=["pending", "enqueued", "running"])
        wait_for(lambda: not live.exists(), message="the burst delivered")
    finally:
        stop.set()
        for thread in workers:
            thread.join(30)
    jobs = Job.objects.filter(effect=recount.path)
    assert jobs.count() == emitters * per_emitter
    assert set(jobs.values_list("status", flat=True)) == {"succeeded", "coalesced"}
    ran = runs()
    assert len(ran) < emitters * per_emitter / 4, f"{len(ran)} runs"
    newest = jobs.order_by("-pk").first()
    assert newest.status == "succeeded"
    assert {"scope": "burst", "total": newest.kwargs["total"]} in ran  # runs overlap: not necessarily the last
    # No emitter waited on another's transaction: each emit took about its own sleep, never seconds.
    assert max(emit_seconds) < 1.0, max(emit_seconds)
