"""critical_path.testing and its pytest plugin: capture, run inline, run eagerly, with Django's on_commit capture."""

import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import TestCase

from critical_path.models import Job
from critical_path.publishing import dispatcher
from critical_path.testing import TooManyRounds, capture_side_effects, eager_side_effects, run_pending_jobs
from tests.effects import always_fails, chain, flaky, forever, note
from tests.helpers import ROOT
from tests.testapp.models import Ledger


class Rollback(Exception):
    pass


def ledger():
    return list(Ledger.objects.order_by("pk").values_list("name", "value"))


@pytest.mark.django_db
def test_capture_records_each_emit_with_its_arguments_and_options():
    with capture_side_effects() as emitted:
        note.after_commit("hello", tag="t")
        note.using(key="k-1", queue="mail", priority=7, delay=60).after_commit("later")

    assert [(entry.path, entry.args, entry.kwargs) for entry in emitted] == [
        ("tests.effects.note", ["hello"], {"tag": "t"}),
        ("tests.effects.note", ["later"], {}),
    ]
    first, second = emitted
    assert (first.key, first.delay, first.database, first.priority) == (None, timedelta(0), "default", 0)
    assert (second.key, second.queue, second.priority, second.delay) == ("k-1", "mail", 7, timedelta(seconds=60))
    assert first.job == Job.objects.get(args=["hello"])


@pytest.mark.django_db
def test_assert_emitted_compares_arguments_as_bound_and_the_options_spelled_with_using():
    with capture_side_effects() as emitted:
        note.using(queue="mail", delay=60).after_commit(text="hello")

    assert emitted.assert_emitted(note).args == []
    emitted.assert_emitted(note, "hello")  # positional or keyword, defaults applied: the same call
    emitted.assert_emitted(note, "hello", tag=None)
    emitted.assert_emitted(note.using(queue="mail"), "hello")
    emitted.assert_emitted_once(note.using(delay=timedelta(minutes=1)))
    emitted.assert_not_emitted(note, "bye")
    emitted.assert_not_emitted(note.using(queue="other"))
    emitted.assert_not_emitted(flaky)


@pytest.mark.django_db
def test_every_option_using_sets_is_asserted_and_listed():
    with capture_side_effects() as emitted:
        note.using(coalesce_key="account-1", ordering_key="account-1").after_commit("hello")

    emitted.assert_emitted_once(note.using(coalesce_key="account-1", ordering_key="account-1"))
    emitted.assert_not_emitted(note.using(coalesce_key="account-2"))
    with pytest.raises(AssertionError, match=r"^tests.effects.note \[key='k', delay=60s, coalesce_key='c'\] was not"):
        emitted.assert_emitted(note.using(coalesce_key="c", delay=60, key="k"))


@pytest.mark.django_db
def test_a_failed_assertion_lists_what_was_emitted():
    with capture_side_effects() as emitted:
        note.after_commit("hello")
    with pytest.raises(AssertionError) as failure:
        emitted.assert_emitted(note.using(priority=3), "hello")

    assert str(failure.value) == (
        "tests.effects.note('hello') [priority=3] was not emitted. Emitted:\n"
        "  tests.effects.note('hello') [database='default', queue='critical-path-tests-idle', priority=0]"
    )
    with pytest.raises(AssertionError, match=r"^tests.effects.flaky was not emitted. Nothing was emitted.$"):
        capture_side_effects().__enter__().assert_emitted(flaky)
    with pytest.raises(AssertionError, match=r"emitted 0 times, not once"):
        emitted.assert_emitted_once(flaky)
    with pytest.raises(TypeError, match=r"tests.effects.note\(text, \*, tag=None\): missing a required argument"):
        emitted.assert_emitted(note, tag="t")


@pytest.mark.django_db
def test_capture_listens_only_inside_its_block_and_keeps_rolled_back_emits():
    with capture_side_effects() as emitted:
        with pytest.raises(Rollback), transaction.atomic():
            note.after_commit("rolled back")
            raise Rollback
    note.after_commit("after the block")

    assert [entry.args for entry in emitted] == [["rolled back"]]
    assert not Job.objects.filter(args=["rolled back"]).exists()


@pytest.mark.django_db(transaction=True)
def test_run_pending_jobs_runs_in_emit_order_and_then_what_the_jobs_emitted():
    with transaction.atomic():
        chain.after_commit("from the chain")
        note.after_commit("first note")
        note.using(delay=3600).after_commit("tomorrow")
    runs = run_pending_jobs()

    assert [(run.job.effect, run.outcome) for run in runs] == [
        ("tests.effects.chain", "succeeded"),
        ("tests.effects.note", "succeeded"),
        ("tests.effects.note", "succeeded"),
    ]
    assert ledger() == [
        ("chain", None),
        ("note", {"text": "first note", "tag": None}),
        ("note", {"text": "from the chain", "tag": None}),
    ]
    assert Job.objects.get(args=["tomorrow"]).status == Job.Status.PENDING
    assert run_pending_jobs() == []
    runs.assert_succeeded()


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_run_pending_jobs_reports_failures_as_a_worker_records_them():
    note.using(database="other").after_commit("elsewhere")
    always_fails.after_commit()
    runs = run_pending_jobs()

    assert [(run.job.effect, run.outcome, run.job.status) for run in runs] == [
        ("tests.effects.always_fails", "failed", Job.Status.FAILED)
    ]
    assert runs.failed == [Job.objects.get()] and runs.succeeded == runs.dead == []
    with pytest.raises(AssertionError) as failure:
        runs.assert_succeeded()
    assert str(failure.value) == (
        "1 of 1 deliveries failed:\n"
        f"  tests.effects.always_fails #{runs[0].job.pk} attempt 1: failed: ValueError: downstream is down"
    )
    assert [run.outcome for run in run_pending_jobs(using="other")] == ["succeeded"]


@pytest.mark.django_db(transaction=True)
def test_run_pending_jobs_with_retries_runs_failed_jobs_until_they_succeed_or_die():
    flaky.after_commit(2)
    always_fails.after_commit()
    runs = run_pending_jobs(retries=True)

    assert [(run.job.effect.rsplit(".", 1)[1], run.outcome) for run in runs] == [
        ("flaky", "failed"),
        ("always_fails", "failed"),
        ("flaky", "failed"),
        ("always_fails", "dead"),
        ("flaky", "succeeded"),
    ]
    assert [job.attempts for job in runs.dead] == [2]


@pytest.mark.django_db(transaction=True)
def test_a_job_that_emits_itself_forever_stops_after_max_rounds():
    forever.after_commit(1)
    with pytest.raises(TooManyRounds) as stopped:
        run_pending_jobs(max_rounds=5)

    assert Ledger.objects.count() == 5
    assert str(stopped.value) == (
        "Jobs were still due after 5 rounds of run_pending_jobs() on 'default' "
        f"(tests.effects.forever #{Job.objects.latest('pk').pk}): a side effect probably emits itself, "
        "directly or through others. Fix the loop, or pass a larger max_rounds if the chain really is that long."
    )


@pytest.mark.django_db(transaction=True)
def test_eager_runs_each_job_right_after_commit_and_publishes_once_off(settings):
    with eager_side_effects():
        with transaction.atomic():
            chain.after_commit("eager")
            assert ledger() == []  # nothing runs before the commit
        assert [name for name, _ in ledger()] == ["chain", "note"]
        assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.SUCCEEDED}

    with transaction.atomic():  # override_settings ended: the next hand-off publishes
        note.after_commit("published")
    assert dispatcher.shutdown(timeout=10)
    assert Job.objects.get(args=["published"]).status == Job.Status.ENQUEUED


@pytest.mark.django_db(transaction=True)
def test_eager_side_effects_fixture(eager_side_effects, emitted_side_effects):
    with transaction.atomic():
        note.after_commit("fixture")

    emitted_side_effects.assert_emitted_once(note, "fixture")
    assert Job.objects.get().status == Job.Status.SUCCEEDED


@pytest.mark.django_db
def test_captured_on_commit_callbacks_run_the_jobs_eagerly(django_capture_on_commit_callbacks, eager_side_effects):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            chain.after_commit("captured")

    assert len(callbacks) == 2  # chain's hand-off, then the hand-off of the note it emitted while running
    assert [name for name, _ in ledger()] == ["chain", "note"]
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.SUCCEEDED}


@pytest.mark.django_db
def test_captured_on_commit_callbacks_then_run_pending_jobs(django_capture_on_commit_callbacks, run_pending_jobs):
    with django_capture_on_commit_callbacks() as callbacks:
        note.after_commit("captured")

    assert len(callbacks) == 1  # the hand-off, not executed: the job waits in the outbox
    assert Job.objects.get().status == Job.Status.PENDING
    assert [run.outcome for run in run_pending_jobs()] == ["succeeded"]


class CaptureOnCommitCallbacksTests(TestCase):
    """The same with Django's own TestCase: captureOnCommitCallbacks, then eager or inline runs."""

    def test_executed_callbacks_hand_the_job_to_eager_delivery(self):
        with eager_side_effects(), capture_side_effects() as emitted:
            with self.captureOnCommitCallbacks(execute=True) as callbacks:
                note.after_commit("from a TestCase")

        self.assertEqual(len(callbacks), 1)
        emitted.assert_emitted_once(note, "from a TestCase")
        self.assertEqual(Job.objects.get().status, Job.Status.SUCCEEDED)

    def test_jobs_left_in_the_outbox_run_inline(self):
        with self.captureOnCommitCallbacks() as callbacks:
            flaky.after_commit(1)

        self.assertEqual(len(callbacks), 1)
        runs = run_pending_jobs(retries=True)
        self.assertEqual([run.outcome for run in runs], ["failed", "succeeded"])


def test_the_plugin_imports_nothing_from_django():
    code = "import sys, critical_path.pytest_plugin; print(sorted(m for m in sys.modules if m.startswith('django')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_plugins_fixtures_reach_a_project_through_the_entry_point(pytester, monkeypatch, tmp_path):
    """A separate pytest run, as a project's: pytest-django and this plugin load from their entry points."""
    pytester.makepyfile(
        test_project=textwrap.dedent(
            """
            import pytest
            from django.db import transaction
            from tests.effects import chain, note

            @pytest.mark.django_db
            def test_capture_and_run(emitted_side_effects, run_pending_jobs):
                chain.after_commit("x")
                emitted_side_effects.assert_emitted_once(chain, "x")
                assert [run.outcome for run in run_pending_jobs()] == ["succeeded", "succeeded"]
                emitted_side_effects.assert_emitted(note, "x")

            @pytest.mark.django_db(transaction=True)
            def test_eager(eager_side_effects):
                with transaction.atomic():
                    job = note.after_commit("y")
                job.refresh_from_db()
                assert job.status == "succeeded"
            """
        )
    )
    prefix = os.environ.get("CRITICAL_PATH_TEST_DB_PREFIX", "test_critical_path")
    env = {
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CRITICAL_PATH_TEST_DATA": str(tmp_path / "data"),
        "CRITICAL_PATH_TEST_DB_PREFIX": f"{prefix}_plugin",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=2)
