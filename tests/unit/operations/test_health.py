"""The health report, its view and its command: ready, or degraded with reasons."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models.functions import Now
from django.test import Client

from critical_path.models import Job, RelayHeartbeat, now_plus
from critical_path.operations import health
from tests.factories import make_job

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def relayed():
    """A relay that passed just now on both databases."""
    for database in ("default", "other"):
        RelayHeartbeat.objects.using(database).create(name="host:1", started_at=Now(), last_run_at=Now())


def test_ready_when_the_relay_runs_and_nothing_waits(relayed):
    report = health.check()
    assert (report.status, report.reasons) == ("ready", [])
    assert report.figures["default"]["dead_letters"] == 0
    assert report.figures["default"]["oldest_pending_age_seconds"] is None


def test_no_relay_is_a_reason():
    report = health.check(["default"], broker=False)
    assert report.reasons == ["no relay has run on database default"]


def test_a_stale_relay_is_a_reason(settings):
    settings.CRITICAL_PATH_HEALTH_RELAY_MAX_AGE = 60
    RelayHeartbeat.objects.create(name="host:1", started_at=Now(), last_run_at=now_plus(-timedelta(minutes=5)))
    [reason] = health.check(["default"], broker=False).reasons
    assert reason.startswith("relay last ran 300 s ago on database default")


def test_an_old_pending_job_and_dead_letters_are_reasons(relayed, settings):
    settings.CRITICAL_PATH_HEALTH_PENDING_MAX_AGE = 60
    settings.CRITICAL_PATH_HEALTH_DEAD_LETTER_LIMIT = 1
    make_job(available_at=now_plus(timedelta(minutes=10)))  # delayed: not waiting yet
    make_job(Job.Status.DEAD, using="other")
    assert health.check(broker=False).reasons == []
    make_job(available_at=now_plus(-timedelta(minutes=10)))
    make_job(Job.Status.DEAD, using="other")
    reasons = health.check(broker=False).reasons
    assert reasons[0].startswith("oldest pending job waits 600 s on database default")
    assert reasons[1] == "2 dead letters on database other (limit 1)"


def test_an_unreachable_broker_is_a_reason(relayed, settings):
    from celery import current_app

    names = ("broker_url", "broker_write_url")  # the write URL is set too when the broker URL came from the env
    saved = {name: current_app.conf[name] for name in names}
    for name in names:
        current_app.conf[name] = "redis://127.0.0.1:1/0"
    settings.CRITICAL_PATH_BROKER_TIMEOUT = 0.5
    try:
        [reason] = health.check().reasons
    finally:
        for name, value in saved.items():
            current_app.conf[name] = value
    assert reason.startswith("broker unreachable: ")


def test_view_answers_200_when_ready_and_503_with_reasons_when_degraded(relayed, settings):
    response = Client().get("/health/")
    assert response.status_code == 200 and response.json()["status"] == "ready"
    assert "no-cache" in response.headers["Cache-Control"]
    make_job(Job.Status.DEAD)
    response = Client().get("/health/?broker=0")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["1 dead letters on database default (limit 0)"]


def test_command_prints_the_status_and_exits_1_when_degraded(relayed, capsys):
    call_command("outbox_health", "--no-broker")
    assert capsys.readouterr().out == "ready\n"
    make_job(Job.Status.DEAD, using="other")
    with pytest.raises(SystemExit) as exit:
        call_command("outbox_health", "--database", "other", "--json")
    assert exit.value.code == 1
    assert '"status": "degraded"' in capsys.readouterr().out


def test_relay_touches_its_liveness_file(tmp_path):
    path = tmp_path / "relay-alive"
    call_command("relay_outbox", "--once", "--database", "default", "--liveness-file", str(path))
    assert path.exists()
