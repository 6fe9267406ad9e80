"""Prometheus metrics, when prometheus-client is installed (``django-critical-path[prometheus]``).

Nothing is imported or registered until the first job event: without
prometheus-client each hook costs one global read. Counters and histograms
are labelled by side effect and queue only (bounded by the code, not the
data). The database-derived gauges — jobs by status, age of the oldest due
pending job — are set by the relay after each pass, one small query per
database, never per scrape. Under Celery's prefork pool, set
``PROMETHEUS_MULTIPROC_DIR`` before the worker starts: every process writes
there, and ``registry()`` merges them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: Every metric: name (as exposed, without the ``_total``/``_bucket`` suffixes), type, labels, help.
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("critical_path_jobs_emitted", "counter", ("effect", "queue"), "Jobs written to the outbox."),
    ("critical_path_jobs_published", "counter", ("effect", "queue"), "Jobs published to the broker."),
    ("critical_path_jobs_succeeded", "counter", ("effect", "queue"), "Attempts that succeeded."),
    ("critical_path_jobs_failed", "counter", ("effect", "queue"), "Attempts that failed and will be retried."),
    ("critical_path_jobs_dead_lettered", "counter", ("effect", "queue"), "Jobs dead-lettered."),
    ("critical_path_jobs_replayed", "counter", ("effect", "queue"), "Jobs replayed."),
    ("critical_path_jobs_discarded", "counter", ("effect", "queue"), "Jobs discarded."),
    (
        "critical_path_jobs_coalesced", "counter", ("effect", "queue"),
        "Jobs not run because a newer equal job, not yet started, runs instead.",
    ),
    (
        "critical_path_jobs_rate_limited", "counter", ("effect", "queue"),
        "Claims given back, without counting an attempt, because the side effect's rate limit was reached.",
    ),
    (
        "critical_path_queue_wait_seconds", "histogram", ("effect", "queue"),
        "From hand-off (or the job's due time, if later) to the start of its first attempt.",
    ),
    ("critical_path_run_seconds", "histogram", ("effect", "queue"), "Time a side effect ran, per attempt."),
    (
        "critical_path_end_to_end_seconds", "histogram", ("effect", "queue"),
        "From the emit to the end of the attempt that succeeded.",
    ),
    ("critical_path_jobs", "gauge", ("database", "status"), "Jobs by live status, as of the relay's last pass."),
    (
        "critical_path_oldest_pending_job_age_seconds", "gauge", ("database",),
        "Age of the oldest due pending job, as of the relay's last pass (0 if none).",
    ),
)  # fmt: skip

#: Buckets (seconds) of the duration histograms: from a fast hand-off to a long side effect.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

_metrics: dict[str, Any] | None = None
_available: bool | None = None
#: Labelled children by (metric, effect, queue): ``labels()`` validates and locks on every call, which cost
#: more than the increment itself. Bounded like the labels: side effects times queues.
_children: dict[tuple[str, str, str], Any] = {}
# Threads of one process (a threaded web server's first requests) may all reach the first event at once;
# registering the metrics twice would raise into their emits.
_lock = threading.Lock()


def _get() -> dict[str, Any] | None:
    if _available is False:
        return None
    if _metrics is None:
        with _lock:
            _register()
    return _metrics


def _register() -> None:
    global _metrics, _available
    if _metrics is None and _available is None:
        try:
            import prometheus_client
        except ImportError:
            _available = False
            return
        made: dict[str, Any] = {}
        for name, kind, labels, documentation in METRICS:
            if kind == "counter":
                made[name] = prometheus_client.Counter(name, documentation, labels)
            elif kind == "histogram":
                made[name] = prometheus_client.Histogram(name, documentation, labels, buckets=BUCKETS)
            else:
                made[name] = prometheus_client.Gauge(name, documentation, labels, multiprocess_mode="mostrecent")
        _metrics, _available = made, True


def count(event: str, effect: str, queue: str, amount: int = 1) -> None:
    """Count ``amount`` jobs of ``effect`` on ``queue`` for ``event`` (``emitted``, ``published``, …)."""
    child = _child(f"critical_path_jobs_{event}", effect, queue)
    if child is not None:
        child.inc(amount)


def observe(histogram: str, effect: str, queue: str, seconds: float) -> None:
    """Record a duration in ``critical_path_<histogram>_seconds``."""
    child = _child(f"critical_path_{histogram}_seconds", effect, queue)
    if child is not None:
        child.observe(max(0.0, seconds))


def _child(name: str, effect: str, queue: str) -> Any:
    key = (name, effect, queue)
    child = _children.get(key)
    if child is None:
        metrics = _get()
        if metrics is None:
            return None
        child = _children[key] = metrics[name].labels(effect, queue)
    return child


def update_outbox_gauges(database: str) -> None:
    """Set the depth and oldest-age gauges of ``database`` (the relay calls this after each pass)."""
    metrics = _get()
    if metrics is None:
        return
    from django.db.models import Count, Min

    from critical_path.core.clock import now as database_now
    from critical_path.models import Job

    jobs = Job.objects.using(database).order_by()
    counts: dict[str, int] = {str(status): 0 for status in (*Job.LIVE_STATUSES, Job.Status.DEAD)}
    arms = [arm.values("status").annotate(n=Count("pk")) for arm in jobs.unfinished_arms()]
    for row in arms[0].union(*arms[1:], all=True):
        counts[row["status"]] = row["n"]
    for status, number in counts.items():
        metrics["critical_path_jobs"].labels(database, status).set(number)
    oldest = jobs.pending_due().aggregate(oldest=Min("available_at"))
    age = (database_now(database) - oldest["oldest"]).total_seconds() if oldest["oldest"] else 0.0
    metrics["critical_path_oldest_pending_job_age_seconds"].labels(database).set(max(0.0, age))


def registry() -> Any:
    """The registry to expose: every process's metrics in multiprocess mode, else this process's."""
    import prometheus_client
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    _get()
    return prometheus_client.REGISTRY


def start_worker_exporter(port: int, address: str = "0.0.0.0") -> None:
    """Serve the merged metrics of a prefork worker's processes over HTTP from its main process (all interfaces)."""
    import prometheus_client

    prometheus_client.start_http_server(port, addr=address, registry=registry())


def mark_process_dead(pid: int) -> None:
    """Drop a finished pool process's live gauges (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
