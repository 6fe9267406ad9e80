"""A real worker: the request's correlation id on the worker's log lines for the job."""

import pytest
from django.test import Client

from critical_path.models import Job
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
