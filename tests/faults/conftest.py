"""Fixtures of the fault-injection suite: servers of the test's own, and the processes of a deployment.

Every fixture stops what it started, whatever the test did to it (a paused
server too), before the test's database is flushed.
"""

import contextlib
import os
import shutil

import pytest

from tests.faults.brokers import celery_on
from tests.faults.postgres import PostgresCluster
from tests.faults.proxy import TcpProxy
from tests.faults.rabbitmq import RabbitMQNode
from tests.faults.servers import RedisServer


def require(binary):
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed; the fault-injection tests start their own servers.")


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of this test's own (no persistence), started."""
    require("redis-server")
    directory = tmp_path / "redis"
    directory.mkdir()
    with RedisServer(directory) as server:
        yield server


@pytest.fixture
def postgres_cluster():
    """A PostgreSQL cluster of this test's own, started."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def rabbitmq_node():
    """A RabbitMQ node of this test's own, started.

    Outside CI the test is skipped if RabbitMQ is not installed or the node does
    not start within 60 s (a loaded host is slow to boot Erlang); in CI (``CI`` set) that is a failure.
    """
    unavailable = pytest.fail if os.environ.get("CI") else pytest.skip
    if shutil.which("rabbitmqctl") is None:
        unavailable("RabbitMQ is not installed (rabbitmq-server, rabbitmqctl)")
    node = RabbitMQNode()
    try:
        try:
            node.start(timeout=60)
        except AssertionError as exc:
            unavailable(f"a RabbitMQ node of the test's own did not start within 60 s: {exc}")
        yield node
    finally:
        node.close()


@pytest.fixture
def tcp_proxy():
    """A factory: ``tcp_proxy(port)`` is a started proxy in front of 127.0.0.1:``port``."""
    proxies = []

    def start(upstream_port):
        proxy = TcpProxy(upstream_port)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def cluster_databases(request):
    """The test databases, migrated, on a PostgreSQL cluster of the test's own; the launcher's processes use them.

    This process stays on the shared server: read the cluster with ``postgres_cluster.execute``.
    Skipped unless the test databases are PostgreSQL's.
    """
    from django.db import connections

    if any(connections[alias].vendor != "postgresql" for alias in connections):
        pytest.skip("the test databases are not PostgreSQL's (set DATABASE_URL)")
    postgres_cluster = request.getfixturevalue("postgres_cluster")
    launch = request.getfixturevalue("launch")  # after the cluster, so its processes stop before the cluster does
    for alias in connections:
        postgres_cluster.create_database(connections[alias].settings_dict["NAME"])
    launch.database_url = postgres_cluster.url()
    for alias in connections:
        launch.manage("migrate", "--database", alias, "--noinput")
    return postgres_cluster


@pytest.fixture
def use_broker():
    """``use_broker(url)``: this process's Celery app (its dispatcher, its relay passes) publishes to ``url``."""
    from critical_path.publishing import dispatcher as dispatch

    with contextlib.ExitStack() as stack:
        yield lambda url: stack.enter_context(celery_on(url))
        assert dispatch.shutdown(timeout=20), "the dispatcher did not stop"
