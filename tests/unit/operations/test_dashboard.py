"""The admin's dashboard: what it shows and how many queries it costs (query plans: features/test_query_plans)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db.models.functions import Now
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from critical_path.models import Job, RelayHeartbeat
from critical_path.operations import dashboard
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

URL = reverse("admin:critical_path_dashboard_changelist")


def ago(**delta):
    return timezone.now() - timedelta(**delta)


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


@pytest.fixture
def jobs():
    note, flaky = "tests.effects.note", "tests.effects.flaky"
    for seconds in (1, 2, 3, 4):
        make_job(
            Job.Status.SUCCEEDED, effect=note, attempts=1, available_at=ago(minutes=5, seconds=seconds),
            enqueued_at=ago(minutes=5), started_at=ago(minutes=5) + timedelta(seconds=seconds),
            finished_at=ago(minutes=5) + timedelta(seconds=2 * seconds),
        )  # fmt: skip
    make_job(effect=note, available_at=ago(minutes=10), queue="mail")
    make_job(Job.Status.ENQUEUED, effect=note, enqueued_at=ago(seconds=5), queue="mail")
    make_job(Job.Status.FAILED, effect=flaky, started_at=ago(minutes=2), available_at=ago(minutes=-5))
    make_job(Job.Status.DEAD, effect=flaky, finished_at=ago(minutes=1), started_at=ago(minutes=1), attempts=3)
    make_job(Job.Status.SUCCEEDED, effect=note, finished_at=ago(days=3), started_at=ago(days=3))


def test_dashboard_figures(jobs):
    figures = dashboard.figures("default")
    assert figures.stats.total.counts["succeeded"] == 4  # the 3-day-old one is outside the one-hour window
    assert figures.stats.total.counts["dead"] == 1
    timings = figures.timings["tests.effects.note"]
    assert timings.queue_wait.count == 4
    assert timings.queue_wait.p50 == pytest.approx(2.5, abs=0.01)
    assert timings.run_time.p99 == pytest.approx(3.97, abs=0.01)
    assert figures.queue_depths == {"mail": 2}
    assert sum(minute.succeeded for minute in figures.minutes) == 4
    assert sum(minute.errors for minute in figures.minutes) == 2
    assert len(figures.minutes) == 60


def test_percentiles_interpolate_like_percentile_cont():
    assert dashboard.Percentiles.of([1.0, 2.0, 3.0, 4.0]).p50 == 2.5
    assert dashboard.Percentiles.of([]).p95 is None


def test_dashboard_page(admin_client, jobs):
    RelayHeartbeat.objects.create(name="host:1", started_at=Now(), last_run_at=Now(), passes=3)
    page = admin_client.get(URL)
    assert page.status_code == 200
    text = page.content.decode()
    assert "<svg" in text and "host:1" in text and "tests.effects.flaky" in text
    assert "mail" in text


def test_dashboard_query_count_does_not_grow_with_jobs(admin_client, jobs, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        admin_client.get(URL)


def test_dashboard_choose_database(admin_client):
    make_job(Job.Status.DEAD, using="other", finished_at=Now())
    page = admin_client.get(URL, {"database": "other"})
    assert page.context["total"].counts["dead"] == 1
    assert admin_client.get(URL, {"database": "nope"}).context["database"] == "default"
