"""The servers the scenarios break: each dies, hangs and comes back as the scenarios need."""

import psycopg
import pytest
import redis

pytestmark = pytest.mark.slow


def test_redis_killed_and_restarted_on_its_port_loses_everything(redis_server):
    with redis_server.client() as client:
        client.rpush("jobs", "1")
    port = redis_server.port
    redis_server.kill()
    assert not redis_server.running
    with pytest.raises(redis.ConnectionError), redis_server.client() as client:
        client.ping()
    redis_server.start()
    assert redis_server.port == port
    with redis_server.client() as client:
        assert client.ping()
        assert redis_server.queue_length("jobs") == 0  # no persistence: a crash loses the messages


def test_paused_redis_hangs_until_resumed(redis_server):
    with redis_server.client() as client:
        client.connection_pool.connection_kwargs["socket_timeout"] = 0.5
        client.ping()
        redis_server.pause()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        redis_server.resume()
    with redis_server.client() as client:
        assert client.ping()


def test_redis_queue_flushed(redis_server):
    with redis_server.client() as client:
        client.rpush("celery", "a", "b")
        client.rpush("other", "c")
    assert redis_server.flush_queue("celery") == 2
    assert (redis_server.queue_length("celery"), redis_server.queue_length("other")) == (0, 1)


def test_postgres_cluster_drops_sessions_and_survives_a_kill(postgres_cluster):
    postgres_cluster.create_database("faults")
    with psycopg.connect(postgres_cluster.url("faults"), autocommit=True) as session:
        session.execute("SELECT 1")
        assert postgres_cluster.terminate_backends("faults") == 1
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    postgres_cluster.restart(kill=True)
    assert postgres_cluster.execute("SELECT count(*) FROM pg_database WHERE datname = 'faults'") == [(1,)]
