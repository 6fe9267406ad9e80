"""CriticalPathBackend: Django tasks enqueued through the outbox, run by deliver, read back as task results."""

import os
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from critical_path import ArgumentNotSerializable, InvalidArguments, backends, batch
from critical_path.backends import effects as task_jobs
from critical_path.backends.compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus, task_enqueued
from critical_path.models import Job
from critical_path.testing import eager_side_effects, run_pending_jobs
from tests import task_functions as tasks
from tests.effects import note
from tests.helpers import wait_for
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def enqueue(task, *args, **kwargs):
    with transaction.atomic():
        return task.enqueue(*args, **kwargs)


def test_enqueue_writes_a_pending_job_in_the_transaction_and_returns_a_ready_result():
    with transaction.atomic():
        result = tasks.add.enqueue(2, 3)
        job = Job.objects.get(pk=int(result.id))  # in the caller's transaction, before the commit
    assert (job.effect, job.args, job.kwargs) == ("tests.task_functions.add", [2, 3], {})
    assert (result.status, result.args, result.backend, result.errors, result.worker_ids) == (
        TaskResultStatus.READY, [2, 3], "default", [], []
    )  # fmt: skip
    assert result.enqueued_at == job.created_at
    assert result.task == tasks.add
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_committed_task_runs_and_its_return_value_is_stored_and_read_back():
    with eager_side_effects():
        result = enqueue(tasks.add, 2, 3)
    job = Job.objects.get(pk=int(result.id))
    assert (job.status, job.return_value) == (Job.Status.SUCCEEDED, 5)
    fetched = tasks.add.get_result(result.id)
    assert (fetched.status, fetched.return_value, fetched.attempts) == (TaskResultStatus.SUCCESSFUL, 5, 1)
    assert fetched.finished_at == job.finished_at and fetched.last_attempted_at == job.started_at
    assert fetched.worker_ids == [job.worker_id] and job.worker_id.endswith(f":{os.getpid()}")
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


def test_a_rolled_back_enqueue_leaves_nothing_and_runs_nothing():
    sent = []
    task_enqueued.connect(receiver := lambda sender, task_result, **kwargs: sent.append(task_result.id), weak=False)
    try:
        with eager_side_effects(), pytest.raises(RuntimeError):
            with transaction.atomic():
                tasks.add.enqueue(1, 1)
                raise RuntimeError("the view failed")
        assert not Job.objects.exists() and not Ledger.objects.exists() and sent == []
        with eager_side_effects():
            result = enqueue(tasks.add, 1, 1)
        assert sent == [result.id]  # sent once the transaction committed
    finally:
        task_enqueued.disconnect(receiver)


def test_a_structured_return_value_round_trips():
    result = enqueue(tasks.report, "sales", rows=[[1, "a"], [2, "b"]])
    run_pending_jobs().assert_succeeded()
    assert tasks.report.get_result(result.id).return_value == {"name": "sales", "rows": [[1, "a"], [2, "b"]]}


@pytest.mark.parametrize(
    ("job_status", "result_status"),
    [
        (Job.Status.PENDING, TaskResultStatus.READY),
        (Job.Status.ENQUEUED, TaskResultStatus.READY),
        (Job.Status.FAILED, TaskResultStatus.READY),
        (Job.Status.RUNNING, TaskResultStatus.RUNNING),
        (Job.Status.SUCCEEDED, TaskResultStatus.SUCCESSFUL),
        (Job.Status.COALESCED, TaskResultStatus.SUCCESSFUL),
        (Job.Status.DEAD, TaskResultStatus.FAILED),
        (Job.Status.DISCARDED, TaskResultStatus.FAILED),
    ],
)
def test_each_job_status_maps_to_a_result_status(job_status, result_status):
    result = enqueue(tasks.add, 1, 2)
    Job.objects.filter(pk=int(result.id)).update(status=job_status, finished_at=timezone.now())
    fetched = tasks.add.get_result(result.id)
    assert fetched.status == result_status
    assert (fetched.finished_at is not None) == fetched.is_finished


def test_a_failing_task_is_retried_then_failed_with_each_error_class_and_traceback():
    result = enqueue(tasks.always_fails.using(backend="other"))  # the "other" backend: MAX_ATTEMPTS 2
    assert Job.objects.using("other").get(pk=int(result.id)).max_attempts == 2
    first = run_pending_jobs(using="other")
    assert [run.outcome for run in first] == ["failed"]
    retrying = tasks.always_fails.using(backend="other").get_result(result.id)
    assert retrying.status == TaskResultStatus.READY  # waiting for its retry
    assert [error.exception_class for error in retrying.errors] == [ValueError]
    run_pending_jobs(using="other", retries=True)
    failed = tasks.always_fails.using(backend="other").get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED and failed.finished_at is not None
    assert [error.exception_class_path for error in failed.errors] == ["builtins.ValueError"] * 2
    assert "ValueError: the report server is down" in failed.errors[-1].traceback
    assert "Traceback (most recent call last)" in failed.errors[0].traceback
    assert len(failed.worker_ids) == failed.attempts == 2
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value


def test_a_permanent_failure_fails_at_once():
    result = enqueue(tasks.refuses)
    run_pending_jobs(retries=True)
    failed = tasks.refuses.get_result(result.id)
    assert (failed.status, failed.attempts) == (TaskResultStatus.FAILED, 1)
    assert failed.errors[0].exception_class_path == "critical_path.exceptions.PermanentFailure"


def test_a_return_value_json_cannot_store_fails_the_task_without_running_it_again():
    result = enqueue(tasks.returns_a_set)
    runs = run_pending_jobs(retries=True)
    assert [run.outcome for run in runs] == ["dead"]
    failed = tasks.returns_a_set.get_result(result.id)
    assert failed.errors[0].exception_class_path == "critical_path.exceptions.ResultNotStorable"
    assert "returned builtins.set, which its result cannot store as JSON" in failed.errors[0].traceback
    assert Ledger.objects.filter(name="returns_a_set").count() == 1


def test_a_task_that_takes_its_context_sees_its_attempt_and_result():
    result = enqueue(tasks.attempts_seen, 2)
    run_pending_jobs(retries=True)
    done = tasks.attempts_seen.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    seen = done.return_value
    assert (seen["attempt"], seen["id"], seen["status"]) == (2, result.id, "RUNNING")
    assert seen["workers"] == done.worker_ids and len(done.worker_ids) == 2
    assert [error.exception_class for error in done.errors] == [ConnectionError]
    assert done.started_at < done.last_attempted_at  # the first attempt's start, the last one's


def test_an_async_task_runs_through_async_to_sync():
    result = enqueue(tasks.add_later, 20, 22)
    run_pending_jobs().assert_succeeded()
    assert tasks.add_later.get_result(result.id).return_value == 42


def test_a_task_of_another_backend_writes_and_reads_its_jobs_on_that_backends_database():
    with transaction.atomic(using="other"):
        result = tasks.on_other.enqueue("hi")
    assert not Job.objects.exists()
    run_pending_jobs(using="other").assert_succeeded()
    assert tasks.on_other.get_result(result.id).return_value == "HI"


@pytest.mark.parametrize(
    ("task_priority", "job_priority"), [(-100, 0), (-1, 0), (0, 0), (1, 1), (11, 1), (12, 2), (50, 5), (100, 9)]
)
def test_priority_maps_onto_zero_to_nine(task_priority, job_priority):
    assert task_jobs.priority(task_priority) == job_priority
    result = enqueue(tasks.add.using(priority=task_priority), 1, 1)
    assert Job.objects.get(pk=int(result.id)).priority == job_priority


def test_the_tasks_queue_is_the_celery_queue_and_default_is_the_outboxs_default(settings):
    settings.CRITICAL_PATH_DEFAULT_QUEUE = "outbox-default"
    reported = enqueue(tasks.report, "x")
    added = enqueue(tasks.add, 1, 1)
    assert Job.objects.get(pk=int(reported.id)).queue == "reports"
    assert Job.objects.get(pk=int(added.id)).queue == "outbox-default"
    assert Job.objects.get(pk=int(reported.id)).priority == 5  # @task(priority=50)


def test_run_after_delays_the_job():
    with eager_side_effects():
        result = enqueue(tasks.add.using(run_after=timezone.now() + timedelta(hours=1)), 1, 1)
    job = Job.objects.get(pk=int(result.id))
    assert job.status == Job.Status.PENDING  # not handed off at commit: the relay publishes it when due
    assert timedelta(minutes=59) < job.available_at - job.created_at <= timedelta(hours=1)
    assert run_pending_jobs() == []


def test_arguments_that_do_not_fit_the_function_are_refused_naming_it():
    with pytest.raises(InvalidArguments, match=r"tests\.task_functions\.add\.enqueue\(a, b\): missing a required"):
        enqueue(tasks.add, 1)
    with pytest.raises(InvalidArguments, match=r"attempts_seen\.enqueue\(fail_until\)"):
        enqueue(tasks.attempts_seen)  # the context is the worker's to pass
    assert not Job.objects.exists()


def test_arguments_json_would_change_are_refused_with_what_to_pass():
    with pytest.raises(ArgumentNotSerializable, match=r"args\[1\] is a builtins\.tuple .* Pass only None, bool"):
        enqueue(tasks.add, 1, (2, 3))
    with pytest.raises(ArgumentNotSerializable, match=r"rows is a datetime\.datetime"):
        enqueue(tasks.report, "x", rows=timezone.now())


def test_a_queue_the_backend_does_not_list_is_refused_by_the_framework():
    with pytest.raises(InvalidTask, match="Queue 'nightly' is not valid"):
        tasks.add.using(queue_name="nightly")


def test_enqueue_inside_a_batch_is_refused_with_what_to_do():
    with pytest.raises(InvalidTask, match="outside the batch block"), batch():
        tasks.add.enqueue(1, 2)
    assert not Job.objects.exists()


def test_get_result_of_an_unknown_id_a_side_effect_or_garbage_does_not_exist():
    with transaction.atomic():
        effect_job = note.after_commit("hello")
    for result_id in ["999999", "abc", "1" * 30, "", "²"]:
        with pytest.raises(TaskResultDoesNotExist, match="a result id is the id of a job"):
            tasks.add.get_result(result_id)
    with pytest.raises(TaskResultDoesNotExist, match=r"runs the side effect tests\.effects\.note, not a task"):
        tasks.add.get_result(str(effect_job.pk))


def test_a_result_of_another_task_is_a_mismatch():
    from critical_path.backends.compat import task_backends

    result = enqueue(tasks.add, 1, 2)
    assert task_backends["default"].get_result(result.id).task == tasks.add
    with pytest.raises(Exception, match="Task does not match"):
        tasks.report.get_result(result.id)


def _not_a_task_by_its_path(text):
    return text


def test_checks_pass_for_the_test_settings():
    from critical_path import checks

    assert checks.check_task_backends() == []


def test_check_reports_bad_options(settings):
    from django.core.checks import Error

    from critical_path import checks

    settings.TASKS = {
        "default": {
            "BACKEND": checks.TASKS_BACKEND,
            "OPTIONS": {"DATABASE": "nowhere", "MAX_ATTEMPTS": 0, "RETRIES": 3},
        }
    }
    errors = checks.check_task_backends()
    assert [error.id for error in errors] == ["critical_path.E008"] * 3
    assert errors[0] == Error(
        "TASKS['default']['OPTIONS'] names unknown options ['RETRIES'].",
        hint="Use only ['DATABASE', 'MAX_ATTEMPTS'].",
        id="critical_path.E008",
    )
    assert "sets DATABASE to 'nowhere'" in errors[1].msg and "sets MAX_ATTEMPTS to 0" in errors[2].msg


def test_check_reports_a_task_a_worker_cannot_import_by_its_path(monkeypatch):
    from critical_path import checks
    from critical_path.backends.compat import Task

    monkeypatch.setattr(backends, "_declared", {})
    Task(func=_not_a_task_by_its_path, backend="default", queue_name="default", priority=0, run_after=None)
    [error] = checks.check_task_backends()
    assert error.id == "critical_path.E009" and error.obj == "tests.unit.backends.test_backends._not_a_task_by_its_path"
    assert "finds function there" in error.msg


def test_check_reports_the_backend_without_the_tasks_framework(monkeypatch):
    import sys

    import critical_path
    from critical_path import checks

    for name in ["backends.effects", "backends.results", "backends.compat", "backends"]:  # imported afresh, restored
        monkeypatch.delitem(sys.modules, f"critical_path.{name}")
    monkeypatch.delattr(critical_path, "backends")
    for name in ["django.tasks", "django_tasks"]:  # neither Django 6's framework nor the backport
        monkeypatch.setitem(sys.modules, name, None)
    [error] = checks.check_task_backends()
    assert error.id == "critical_path.E007" and "install the django-tasks package" in error.hint


@pytest.mark.slow
def test_a_real_worker_runs_an_enqueued_task_and_its_result_names_the_worker(worker, worker_queue):
    result = enqueue(tasks.add, 40, 2)
    done = wait_for(
        lambda: (fetched := tasks.add.get_result(result.id)).is_finished and fetched,
        timeout=60,
        message="the task's result",
    )
    assert (done.status, done.return_value) == (TaskResultStatus.SUCCESSFUL, 42), worker.output()
    [worker_id] = done.worker_ids
    assert worker_id.startswith(f"{worker.queue}@")
