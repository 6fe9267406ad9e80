"""The launcher's processes on servers of the test's own: the wiring the database scenarios build on."""

import pytest
from django.db import connections

from critical_path.models import Job
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]


def test_processes_use_a_database_cluster_of_the_test_s_own(redis_server, cluster_databases, launch):
    emitter = launch.emitter(redis_server.url, count=5, key_prefix="own")
    assert emitter.wait() == 0, emitter.output()
    worker = launch.worker(redis_server.url)
    assert len(worker.members()) == 2  # the prefork pool

    database = connections["default"].settings_dict["NAME"]
    succeeded = "SELECT count(*) FROM critical_path_job WHERE status = 'succeeded'"
    wait_for(lambda: cluster_databases.execute(succeeded, database=database) == [(5,)], message="5 jobs succeeded")
    assert cluster_databases.execute("SELECT count(*) FROM testapp_ledger", database=database) == [(5,)]
    assert not Job.objects.exists()  # the shared server's test database saw none of it
