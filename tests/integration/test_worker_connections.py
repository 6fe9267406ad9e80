"""A worker keeps its database connection from one delivery to the next, with Celery's defaults.

Celery's Django fixup closes every connection around every task unless
``CELERY_DB_REUSE_MAX`` is set; the deliver task is exempt and closes only what
is broken or past ``CONN_MAX_AGE``, as Django does around a request.
"""

import logging

import pytest
from django.db import connections, transaction

from critical_path.models import Job
from critical_path.worker import connections as worker_connections
from tests.effects import count_connections
from tests.helpers import wait_for

JOBS = 20


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_worker_with_celerys_defaults_connects_once_per_process(launch, settings):
    assert not getattr(settings, "CELERY_DB_REUSE_MAX", None)  # the processes run Celery's defaults too
    launch.worker(settings.CELERY_BROKER_URL, concurrency=2)
    with transaction.atomic():
        jobs = [count_connections.after_commit() for _ in range(JOBS)]
    wait_for(
        lambda: Job.objects.filter(pk__in=[job.pk for job in jobs], status=Job.Status.SUCCEEDED).count() == JOBS,
        message=f"{JOBS} jobs succeeded",
    )
    from tests.testapp.models import Ledger

    opened: dict[int, list[int]] = {}
    for run in Ledger.objects.filter(name="count_connections"):
        opened.setdefault(run.value["pid"], []).append(run.value["opened"])
    for pid, counts in opened.items():
        # Each process connected once for its first job; before, it connected again for every job.
        assert max(counts) - min(counts) == 0, f"process {pid} opened connections between its jobs: {sorted(counts)}"


def test_the_worker_says_once_which_databases_it_reconnects_to_for_every_job(monkeypatch, caplog):
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    monkeypatch.setitem(connections.settings["other"], "CONN_MAX_AGE", 600)
    with caplog.at_level(logging.WARNING, logger=worker_connections.logger.name):
        worker_connections.warn_reconnecting()
    [record] = caplog.records
    assert record.getMessage() == (
        "database 'default' has CONN_MAX_AGE = 0, so the worker connects to it anew for every job; set "
        "CONN_MAX_AGE (e.g. 600) and CONN_HEALTH_CHECKS = True in DATABASES['default'] to keep the connection"
    )
