"""Real workers: the request's correlation id on their log lines, their liveness file, their metrics exporter."""

from urllib.request import urlopen

import pytest
from django.db import transaction
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from critical_path.models import Job
from tests.faults.effects import stalls
from tests.faults.servers import free_port
from tests.helpers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.slow]


def test_the_worker_logs_the_requests_correlation_id(worker, worker_queue):
    response = Client().post("/signup/", {"email": "w@example.com"}, headers={"X-Request-ID": "req-worker-1"})
    job_id = response.json()["job"]
    wait_for(lambda: Job.objects.get(pk=job_id).status == Job.Status.SUCCEEDED, message="job delivered")
    lines = [line for line in worker.output().splitlines() if "[req-worker-1 " in line]
    assert any(f"job={job_id} attempt=1] job claimed id={job_id}" in line for line in lines), worker.output()
    assert any("job succeeded" in line for line in lines)


def test_a_worker_keeps_its_liveness_file_fresh_and_removes_it_when_it_stops(launch, settings, tmp_path):
    alive = tmp_path / "probe" / "worker-alive"
    worker = launch.worker(settings.CELERY_BROKER_URL, worker_liveness_file=alive, worker_liveness_interval=0.2)
    wait_for(alive.exists, message="liveness file written")
    touched = alive.stat().st_mtime_ns
    wait_for(lambda: alive.stat().st_mtime_ns > touched, timeout=10, message="liveness file touched again")
    touched = alive.stat().st_mtime_ns
    wait_for(lambda: alive.stat().st_mtime_ns > touched, timeout=10, message="and again")
    worker.terminate()
    assert worker.process.returncode == 0, worker.output()
    assert not alive.exists()


def test_a_prefork_workers_exporter_serves_the_counts_of_all_its_processes(launch, settings, tmp_path):
    port, directory = free_port(), tmp_path / "prometheus"
    directory.mkdir()
    launch.worker(
        settings.CELERY_BROKER_URL, concurrency=2, worker_metrics_port=port,
        environ={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )  # fmt: skip
    with transaction.atomic():
        for _ in range(6):
            stalls.after_commit(0.3)  # long enough for both pool processes to take jobs

    def succeeded():
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "critical_path_jobs_succeeded_total"
            and sample.labels["effect"] == "tests.faults.effects.stalls"
        )

    wait_for(lambda: succeeded() >= 6, timeout=60, message="six jobs counted")
    assert Job.objects.filter(status=Job.Status.SUCCEEDED).count() == 6
    assert succeeded() == 6
    assert len(list(directory.glob("counter_*.db"))) >= 2, "both pool processes ran jobs"
