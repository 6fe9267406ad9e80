"""The deliver task handles database connections as Django does around a request: CONN_MAX_AGE, health checks."""

import time

import pytest
from django.db import connections, transaction

from critical_path import tasks
from critical_path.models import Job
from critical_path.worker.outcomes import Outcome
from tests.effects import note

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def persistent(monkeypatch):
    """The default connection reopened with CONN_MAX_AGE=None and health checks on: a worker set up for reuse."""
    connection = connections["default"]
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", None)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    connection.ensure_connection()
    yield connection
    connection.close()


def emit(text):
    with transaction.atomic():
        return note.after_commit(text)


def test_a_persistent_connection_is_kept_from_job_to_job(persistent):
    first, second = emit("ada"), emit("grace")
    assert tasks.deliver(first.pk, "default") == Outcome.SUCCEEDED
    raw = persistent.connection
    assert tasks.deliver(second.pk, "default") == Outcome.SUCCEEDED
    assert persistent.connection is raw
    assert Job.objects.filter(status=Job.Status.SUCCEEDED).count() == 2


def test_a_connection_past_its_max_age_is_replaced(persistent, monkeypatch):
    monkeypatch.setitem(persistent.settings_dict, "CONN_MAX_AGE", 60)
    job = emit("ada")
    raw = persistent.connection
    persistent.close_at = time.monotonic() - 1
    assert tasks.deliver(job.pk, "default") == Outcome.SUCCEEDED
    assert persistent.connection is not None
    assert persistent.connection is not raw


def test_a_connection_the_server_dropped_is_replaced_before_the_claim(persistent):
    if persistent.vendor != "postgresql":
        pytest.skip("the server ends the session: PostgreSQL's pg_terminate_backend")
    job = emit("ada")
    with persistent.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [(pid,)] = cursor.fetchall()
    with connections["other"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert tasks.deliver(job.pk, "default") == Outcome.SUCCEEDED
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED


def test_without_health_checks_a_dropped_connection_fails_one_delivery_and_the_next_reconnects(persistent, monkeypatch):
    if persistent.vendor != "postgresql":
        pytest.skip("the server ends the session: PostgreSQL's pg_terminate_backend")
    from django.db import OperationalError

    monkeypatch.setattr(persistent, "health_check_enabled", False)  # as if connected with CONN_HEALTH_CHECKS off
    first, second = emit("ada"), emit("grace")
    with persistent.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [(pid,)] = cursor.fetchall()
    with connections["other"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(OperationalError):
        tasks.deliver(first.pk, "default")  # the task fails; the relay publishes the unclaimed job again
    assert tasks.deliver(second.pk, "default") == Outcome.SUCCEEDED
    assert Job.objects.get(pk=first.pk).status in (Job.Status.PENDING, Job.Status.ENQUEUED)  # unclaimed, live


def test_a_failed_attempt_is_a_failed_celery_task_that_celery_neither_logs_as_an_error_nor_retries(caplog):
    from celery.signals import task_failure

    from critical_path.exceptions import AttemptFailed
    from tests.effects import always_fails

    with transaction.atomic():
        job = always_fails.after_commit()
    failures = []
    task_failure.connect(receiver := lambda sender, exception, **kwargs: failures.append(exception), weak=False)
    try:
        result = tasks.deliver.apply(args=(job.pk, "default"))
    finally:
        task_failure.disconnect(receiver)

    assert result.state == "FAILURE" and failures == [result.result]
    assert isinstance(result.result, AttemptFailed) and tasks.deliver.throws == (AttemptFailed,)
    assert str(result.result) == (
        f"job {job.pk} tests.effects.always_fails attempt 1 of 2 failed, to be retried: ValueError: downstream is down"
    )
    assert isinstance(result.result.__cause__, ValueError)  # Sentry and task_failure receivers see the error
    assert not [record for record in caplog.records if record.levelname == "ERROR" and record.name.startswith("celery")]
    assert Job.objects.values_list("status", "attempts").get(pk=job.pk) == (Job.Status.FAILED, 1)


def test_a_dead_letter_is_a_failed_celery_task_reported_as_an_error():
    from critical_path.exceptions import DeadLettered
    from tests.effects import permanent

    with transaction.atomic():
        job = permanent.after_commit()

    result = tasks.deliver.apply(args=(job.pk, "default"))

    assert result.state == "FAILURE" and isinstance(result.result, DeadLettered)
    assert str(result.result).startswith(f"job {job.pk} tests.effects.permanent dead-lettered after attempt 1 of 5: ")
    assert Job.objects.get(pk=job.pk).status == Job.Status.DEAD


def test_outcomes_that_are_not_failures_are_successful_tasks():
    job = emit("ada")
    assert tasks.deliver.apply(args=(job.pk, "default")).get() == Outcome.SUCCEEDED
    assert tasks.deliver.apply(args=(job.pk, "default")).get() == Outcome.SKIPPED  # a duplicate message
