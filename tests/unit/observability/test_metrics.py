"""Prometheus metrics: counted where jobs move, scraped from the view and parsed by prometheus-client."""

import re
import sys

import pytest
from django.db import transaction
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from critical_path.models import Job
from critical_path.observability import metrics
from critical_path.outbox import transitions
from critical_path.relay import passes
from critical_path.worker import delivery
from tests.effects import always_fails, note
from tests.factories import make_job
from tests.helpers import ROOT

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

DOCS = ROOT / "docs" / "topics" / "observability.rst"
LABELS = ("tests.effects.note", "critical-path-tests-idle")


def scrape():
    response = Client().get("/metrics/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def job_labels(effect="tests.effects.note"):
    return {"effect": effect, "queue": "critical-path-tests-idle"}


def test_a_jobs_life_is_counted_and_timed():
    before = scrape()
    with transaction.atomic():
        job = note.after_commit("counted")
        failing = always_fails.after_commit()
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.SUCCEEDED
    assert delivery.deliver(failing.pk, "default") == delivery.Outcome.FAILED
    after = scrape()

    def grew(name, effect="tests.effects.note"):
        return value(after, name, **job_labels(effect)) - value(before, name, **job_labels(effect))

    assert grew("critical_path_jobs_emitted_total") == 1
    assert grew("critical_path_jobs_succeeded_total") == 1
    assert grew("critical_path_jobs_failed_total", "tests.effects.always_fails") == 1
    assert grew("critical_path_run_seconds_count") == 1
    assert grew("critical_path_queue_wait_seconds_count") == 1
    assert grew("critical_path_end_to_end_seconds_count") == 1
    assert grew("critical_path_end_to_end_seconds_count", "tests.effects.always_fails") == 0


def test_dead_letters_replays_and_discards_are_counted():
    before = scrape()
    dead = make_job(Job.Status.DEAD)
    transitions.replay([dead.pk])
    transitions.discard([dead.pk])
    after = scrape()
    for event in ("replayed", "discarded"):
        name = f"critical_path_jobs_{event}_total"
        assert value(after, name, **job_labels()) - value(before, name, **job_labels()) == 1


def test_the_relay_sets_the_depth_and_oldest_age_gauges():
    make_job(Job.Status.DEAD)
    make_job(Job.Status.FAILED, available_at=passes.now_plus(passes.timedelta(hours=1)))
    passes.run_once("default")
    samples = scrape()
    assert value(samples, "critical_path_jobs", database="default", status="dead") == 1
    assert value(samples, "critical_path_jobs", database="default", status="failed") == 1
    assert value(samples, "critical_path_jobs", database="default", status="pending") == 0
    assert value(samples, "critical_path_oldest_pending_job_age_seconds", database="default") == 0


def test_counters_have_no_unbounded_labels_and_follow_the_naming_conventions():
    for name, kind, labels, _ in metrics.METRICS:
        assert re.fullmatch(r"critical_path_[a-z_]+", name)
        assert not name.endswith("_total"), "prometheus-client adds _total to counters"
        assert set(labels) <= {"effect", "queue", "database", "status"}
        if kind == "histogram":
            assert name.endswith("_seconds")


def test_the_docs_list_exactly_the_metrics_the_code_exposes():
    documented = set(re.findall(r"^``(critical_path_[a-z_]+)``", DOCS.read_text(), re.MULTILINE))
    exposed = {name + ("_total" if kind == "counter" else "") for name, kind, _, _ in metrics.METRICS}
    assert documented == exposed


def test_without_prometheus_client_the_hooks_do_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr(metrics, "_metrics", None)
    monkeypatch.setattr(metrics, "_available", None)
    monkeypatch.setattr(metrics, "_children", {})
    metrics.count("emitted", *LABELS)
    metrics.observe("run", *LABELS, 1.0)
    metrics.update_outbox_gauges("default")
    assert metrics._available is False
