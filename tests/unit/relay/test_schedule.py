"""The relay on django-celery-beat's schedule: installed once, then the operator's to edit."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from critical_path import tasks
from critical_path.models import Job
from critical_path.relay import schedule as beat
from tests.factories import make_job

pytest.importorskip("django_celery_beat", reason="the beat extra is not installed (it supports Django < 6.1 only)")
from django_celery_beat.models import IntervalSchedule, PeriodicTask

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_install_creates_the_periodic_task_once():
    task, created = beat.install_schedule()
    assert created
    assert (task.name, task.task, task.enabled) == ("critical_path: relay outbox", "critical_path.relay", True)
    assert (task.interval.every, task.interval.period) == (5, IntervalSchedule.SECONDS)
    assert task.expire_seconds == 5 and json.loads(task.kwargs) == {}
    assert task.queue == "critical-path-tests-idle"  # CRITICAL_PATH_DEFAULT_QUEUE


def test_installing_again_keeps_what_the_operator_edited():
    task, _ = beat.install_schedule()
    task.interval = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    task.enabled = False
    task.save()
    again, created = beat.install_schedule(every=2)
    assert not created and again.pk == task.pk
    again.refresh_from_db()
    assert (again.interval.every, again.enabled) == (30, False)
    assert PeriodicTask.objects.filter(task="critical_path.relay").count() == 1


def test_command_installs_with_options_and_reports():
    out = StringIO()
    call_command("install_relay_schedule", "--every", "2.5", "--database", "other", "--queue", "relay", stdout=out)
    task = PeriodicTask.objects.get(task="critical_path.relay")
    assert (task.interval.every, json.loads(task.kwargs), task.queue) == (3, {"databases": ["other"]}, "relay")
    assert out.getvalue().startswith("Installed 'critical_path: relay outbox': every 3 seconds, enabled.")
    out = StringIO()
    call_command("install_relay_schedule", stdout=out)
    assert "is already installed" in out.getvalue() and "edit it in the admin" in out.getvalue()


def test_command_refuses_an_unknown_database():
    with pytest.raises(CommandError, match="Unknown database alias 'nope'"):
        call_command("install_relay_schedule", "--database", "nope")
    assert not PeriodicTask.objects.exists()


def test_without_django_celery_beat_the_error_says_what_to_do(settings):
    apps = [app for app in settings.INSTALLED_APPS if app != "django_celery_beat"]
    with override_settings(INSTALLED_APPS=apps), pytest.raises(ImproperlyConfigured, match=r"\[beat\]"):
        beat.install_schedule()


def test_the_scheduled_task_runs_one_pass_over_the_named_databases():
    old = timezone.now() - timedelta(seconds=60)
    here = make_job(created_at=old, available_at=old)
    there = make_job(using="other", created_at=old, available_at=old)
    tasks.relay.apply(kwargs={"databases": ["other"]}).get()
    assert Job.objects.get(pk=here.pk).status == Job.Status.PENDING
    assert Job.objects.using("other").get(pk=there.pk).status == Job.Status.ENQUEUED
