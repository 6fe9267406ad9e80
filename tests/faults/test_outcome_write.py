"""S14: the database ends a worker's session after its side effect ran, before its success is written.

The success's UPDATE meets a dropped connection (a failover, ``pg_terminate_backend``,
a pooler restart). It is a compare-and-set under the attempt's claim, so the
worker runs it again on a new connection: the job succeeds at its first attempt,
and the side effect ran once. Without that, the job would stay ``running`` for its
whole lease, be rescued as a lost worker, and run again.
"""

import pytest
from django.db import connection, transaction

from critical_path.models import Job
from tests.faults.effects import loses_its_connection_after_the_run
from tests.faults.outcomes import runs_per_key, wait_until_all

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

#: A lease of 3.5 s (time limit 3 s): a success left unwritten would be rescued and run again within the test.
KNOBS = {"lease_grace": 0.5, "retry_backoff": 0.1, "retry_backoff_max": 0.2}


def test_s14_a_success_written_on_a_dropped_connection_is_written_again_and_the_job_runs_once(
    redis_server, launch, use_broker
):
    if connection.vendor != "postgresql":
        pytest.skip("the server ends the worker's session: PostgreSQL's pg_terminate_backend")
    worker = launch.worker(redis_server.url, concurrency=1, **KNOBS)
    launch.relay(redis_server.url, interval=0.2, **KNOBS)
    use_broker(redis_server.url)
    with transaction.atomic():
        job = loses_its_connection_after_the_run.using(key="s14").after_commit("s14")

    wait_until_all(["s14"], Job.Status.SUCCEEDED, timeout=30)
    job.refresh_from_db()
    assert (job.attempts, job.error_history) == (1, [])
    assert runs_per_key("loses_its_connection_after_the_run") == {"s14": 1}
    assert "job outcome not written, trying again on a new connection" in worker.output()
