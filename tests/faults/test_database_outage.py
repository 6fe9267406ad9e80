"""S8: the database drops its connections mid-claim, then restarts, under a worker and a relay at work.

Whatever each job was doing when its connection went (being claimed, run or
recorded), the relay puts it right: a claim that never committed leaves the job
``enqueued`` (republished), a run whose outcome was lost leaves it ``running``
(rescued after its lease). Every job ends ``succeeded``, and the side effect,
idempotent on its key, is delivered once per job.
"""

import pytest
from django.db import connections

from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

JOBS = 40
KNOBS = {
    "lease_grace": 0.5, "retry_backoff": 0.1, "retry_backoff_max": 0.5, "relay_grace": 0.5, "republish_after": 1,
}  # fmt: skip


def test_s8_database_connections_dropped_then_database_restarted(redis_server, cluster_databases, launch):
    database = connections["default"].settings_dict["NAME"]

    def count(sql):
        """One number from the cluster; ``None`` while it is down."""
        try:
            return cluster_databases.execute(sql, database=database)[0][0]
        except Exception:
            return None

    def delivered():
        return count("SELECT count(*) FROM testapp_ledger WHERE name = 'delivers_slowly.delivered'") or 0

    worker = launch.worker(redis_server.url, **KNOBS)
    relay = launch.relay(redis_server.url, interval=0.2, **KNOBS)
    emitter = launch.emitter(
        redis_server.url, count=JOBS, key_prefix="s8", effect="tests.faults.effects.delivers_slowly", **KNOBS
    )
    assert emitter.wait() == 0, emitter.output()

    wait_for(lambda: delivered() >= 5, timeout=20, message="the burst under way")
    assert cluster_databases.terminate_backends() > 0
    progress = delivered()
    wait_for(lambda: delivered() >= progress + 5, timeout=20, message="work resumed after the dropped connections")
    assert delivered() < JOBS, "the burst was over before the restart"
    cluster_databases.restart(kill=True)

    succeeded = "SELECT count(*) FROM critical_path_job WHERE status = 'succeeded'"
    try:
        wait_for(lambda: count(succeeded) == JOBS, timeout=60, interval=0.2)
    except AssertionError:
        where = cluster_databases.execute(
            "SELECT status, count(*) FROM critical_path_job GROUP BY 1", database=database
        )
        raise AssertionError(f"after 60 s, not all {JOBS} jobs succeeded: {dict(where)}") from None
    deliveries = cluster_databases.execute(
        "SELECT idempotency_key, count(*) FROM testapp_ledger WHERE name = 'delivers_slowly.delivered' GROUP BY 1",
        database=database,
    )
    assert dict(deliveries) == {f"s8-{index}": 1 for index in range(JOBS)}
    assert worker.running, worker.output()
    assert relay.running, relay.output()
