"""outbox_stats: counts, oldest due pending job, throughput and error rate, per side effect; stable JSON."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from critical_path.models import Job
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def stats(*args):
    out = io.StringIO()
    call_command("outbox_stats", *args, stdout=out)
    return out.getvalue()


def ago(**delta):
    return timezone.now() - timedelta(**delta)


@pytest.fixture
def jobs():
    note, flaky = "tests.effects.note", "tests.effects.flaky"
    make_job(effect=note, available_at=ago(minutes=10))  # pending, due 10 minutes ago
    make_job(effect=note, available_at=ago(minutes=-10))  # pending, delayed: not counted as waiting
    make_job(Job.Status.SUCCEEDED, effect=note, finished_at=ago(seconds=10))
    make_job(Job.Status.SUCCEEDED, effect=note, finished_at=ago(minutes=30))
    make_job(Job.Status.SUCCEEDED, effect=note, finished_at=ago(hours=3))
    make_job(Job.Status.FAILED, effect=flaky, started_at=ago(minutes=5))
    make_job(Job.Status.DEAD, effect=flaky, finished_at=ago(minutes=5))
    make_job(Job.Status.DEAD, effect=flaky, finished_at=ago(days=2))
    make_job(Job.Status.SUCCEEDED, effect=flaky, finished_at=ago(minutes=20))


def test_json_is_versioned_and_counts_per_side_effect(jobs):
    document = json.loads(stats("--json"))
    assert document["version"] == 1 and document["database"] == "default"
    assert set(document) == {"version", "database", "now", "total", "effects"}
    note = document["effects"]["tests.effects.note"]
    flaky = document["effects"]["tests.effects.flaky"]
    assert note["counts"] == {**dict.fromkeys(Job.Status.values, 0), "pending": 2, "succeeded": 3}
    assert 590 <= note["oldest_pending_age_seconds"] < 660
    assert (note["succeeded_last_minute"], note["succeeded_last_hour"], note["error_rate_last_hour"]) == (1, 2, 0.0)
    assert flaky["oldest_pending_age_seconds"] is None
    assert (flaky["failed_last_hour"], flaky["dead_last_hour"], flaky["succeeded_last_hour"]) == (1, 1, 1)
    assert flaky["error_rate_last_hour"] == pytest.approx(2 / 3)
    total = document["total"]
    assert total["counts"]["dead"] == 2 and total["succeeded_last_hour"] == 3
    assert total["error_rate_last_hour"] == pytest.approx(2 / 5)
    assert set(total) == {
        "counts", "oldest_pending_age_seconds", "succeeded_last_minute", "succeeded_last_hour",
        "failed_last_hour", "dead_last_hour", "error_rate_last_hour",
    }  # fmt: skip


def test_empty_outbox():
    document = json.loads(stats("--json"))
    assert document["effects"] == {}
    assert document["total"]["oldest_pending_age_seconds"] is None
    assert document["total"]["error_rate_last_hour"] is None


def test_table(jobs):
    output = stats()
    assert "Database 'default' at" in output
    lines = output.splitlines()
    assert lines[1].split()[:3] == ["side", "effect", "pending"]
    assert lines[2].split()[0] == "(all)" and "40.0%" in lines[2]
    assert any(line.startswith("tests.effects.flaky") and "66.7%" in line for line in lines)


def test_database_option():
    make_job(Job.Status.DEAD, using="other")
    assert json.loads(stats("--json", "--database", "other"))["total"]["counts"]["dead"] == 1
    with pytest.raises(CommandError, match="Unknown database alias 'nope'"):
        stats("--database", "nope")
