"""A process without the project's Celery app is told so, and its hand-offs wait instead of going astray."""

import logging

import pytest
from celery import Celery, _state, current_app
from django.core.checks import Error, Warning
from django.db import transaction

from critical_path import checks
from critical_path.models import Job
from critical_path.publishing import celery_app, publisher
from critical_path.publishing import dispatcher as dispatch
from tests.effects import note


@pytest.fixture
def fallback_app():
    """Celery's own fallback app made current, as in a process whose project package never imported its app."""
    previous, previous_default = current_app._get_current_object(), _state.default_app
    app = Celery(celery_app.FALLBACK_NAME, fixups=[], set_as_current=False)
    app.set_default()  # the dispatcher's thread sees the default app
    app.set_current()
    publisher._reported.clear()
    yield app
    _state.set_default_app(previous_default)
    previous.set_current()
    publisher._reported.clear()


def test_the_project_s_app_is_fine(settings):
    assert celery_app.problem(current_app) is None
    assert checks.check_celery_app() == []


def test_no_app_with_a_broker_setting_is_an_error(fallback_app, settings, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settings.CELERY_BROKER_URL = "redis://:secret@cache.internal:6379/0"
    assert checks.check_celery_app() == [
        Error(
            "No Celery app is loaded in this process: Celery's fallback app ignores CELERY_BROKER_URL "
            "(redis://:**@cache.internal:6379/0) and would publish to amqp://guest@localhost//, where no worker "
            "reads.",
            hint="Define a Celery app that reads Django's settings (proj/celery.py) and import it in "
            "proj/__init__.py, as Celery's 'First steps with Django' shows.",
            id="critical_path.E010",
        )
    ]


def test_no_app_and_no_broker_is_a_warning(fallback_app, settings, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    del settings.CELERY_BROKER_URL
    [warning] = checks.check_celery_app()
    assert warning.id == "critical_path.W005" and isinstance(warning, Warning)
    assert warning.msg == (
        "No Celery app is loaded in this process: side effects are handed to amqp://guest@localhost// by Celery's "
        "fallback app, which reads none of the project's CELERY_* settings."
    )
    assert "set CELERY_BROKER_URL" in warning.hint


def test_an_app_that_does_not_read_the_broker_setting_is_a_warning(settings, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery would read it from the environment
    app = Celery("proj", set_as_current=False)  # no config_from_object: Django's CELERY_* settings are not read
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/9"
    found = celery_app.problem(app)
    assert found is not None and not found.refuse
    assert found.message == (
        "the Celery app 'proj' does not read CELERY_BROKER_URL (redis://127.0.0.1:6379/9): it publishes to "
        "amqp://guest@localhost//"
    )


@pytest.mark.django_db(transaction=True)
def test_a_hand_off_with_the_fallback_app_leaves_the_job_pending_and_says_why_once(
    fallback_app, settings, caplog, monkeypatch
):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/9"
    with caplog.at_level(logging.ERROR, logger=publisher.logger.name):
        for _ in range(2):  # a dispatcher each time: the second publisher finds the same problem
            with transaction.atomic():
                note.after_commit("astray?")
            assert dispatch.shutdown(timeout=10)
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.PENDING}
    [record] = [record for record in caplog.records if record.name == publisher.logger.name]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("no Celery app is loaded in this process")
    assert record.getMessage().endswith("(jobs stay pending until then)")
