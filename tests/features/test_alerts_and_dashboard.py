"""The Prometheus alert rules and the Grafana dashboard in docs/observability: they parse, name only the metrics
the code exposes, and (with promtool) the rules are valid and fire on the series they are written for."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from critical_path.observability.metrics import METRICS
from tests.helpers import ROOT

RULES = ROOT / "docs" / "observability" / "alerts.yml"
DASHBOARD = ROOT / "docs" / "observability" / "grafana-dashboard.json"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
EXPOSED = {name + suffix for name, kind, _, _ in METRICS for suffix in SUFFIXES[kind]}


def metric_names(expr):
    """The metric names an expression selects: bare names, and the alternatives of a ``__name__=~`` regex."""
    names = set()
    for pattern in re.findall(r'__name__=~"([^"]+)"', expr):
        matched = {name for name in EXPOSED if re.fullmatch(pattern, name)}
        assert len(matched) == pattern.count("|") + 1, f"{pattern} selects a metric that does not exist"
        names |= matched
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return names | set(re.findall(r"\bcritical_path_[a-z0-9_]+\b", without_strings))


def rules():
    document = yaml.safe_load(RULES.read_text())
    (group,) = document["groups"]
    assert group["name"] == "critical_path"
    return group["rules"]


def test_the_rules_name_only_exposed_metrics_and_recorded_series():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        assert metric_names(rule["expr"]) <= EXPOSED, rule
        for used in re.findall(r"\bcritical_path:[a-z0-9_:]+", rule["expr"]):
            assert used in recorded, used


def test_the_four_alerts_exist_with_a_severity_and_a_summary():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) == {
        "CriticalPathErrorRateHigh",
        "CriticalPathQueueWaitHigh",
        "CriticalPathPendingJobTooOld",
        "CriticalPathDeadLetter",
    }
    error_rate = alerts["CriticalPathErrorRateHigh"]
    assert "> 0.05" in error_rate["expr"] and error_rate["for"] == "5m"
    assert "histogram_quantile(0.99" in alerts["CriticalPathQueueWaitHigh"]["expr"]
    assert "critical_path_oldest_pending_job_age_seconds" in alerts["CriticalPathPendingJobTooOld"]["expr"]
    assert "[1h]" in alerts["CriticalPathDeadLetter"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_the_dashboard_queries_only_exposed_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= EXPOSED, (panel["title"], target["expr"])
            used |= names
    for variable in dashboard["templating"]["list"]:
        assert metric_names(variable["query"]["query"]) <= EXPOSED
    for required in (
        "critical_path_jobs_succeeded_total",
        "critical_path_jobs_failed_total",
        "critical_path_queue_wait_seconds_bucket",
        "critical_path_run_seconds_bucket",
        "critical_path_jobs",
        "critical_path_oldest_pending_job_age_seconds",
        "critical_path_jobs_dead_lettered_total",
    ):
        assert required in used, required


def promtool():
    path = shutil.which("promtool")
    if path is None:
        unavailable = pytest.fail if os.environ.get("CI") else pytest.skip
        unavailable("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_promtool_accepts_the_rules():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_on_the_series_they_are_written_for():
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
