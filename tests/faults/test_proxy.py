"""The TCP proxy: pass-through, blackhole, latency and cut connections, switched while it runs."""

import socket
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = pytest.mark.slow


def client(port, timeout=1.0):
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def test_modes_switch_while_running(redis_server, tcp_proxy):
    proxy = tcp_proxy(redis_server.port)
    with client(proxy.port) as through:
        assert through.ping()
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            through.ping()
    with client(proxy.port, timeout=0.5) as fresh, pytest.raises(redis.TimeoutError):
        fresh.ping()  # accepted, never answered
    proxy.pass_through()
    with client(proxy.port) as through:
        assert through.ping()
        proxy.delay(0.3)
        started = time.monotonic()
        assert through.ping()
        assert time.monotonic() - started >= 0.6  # there and back


def test_dropped_connections_are_closed_on_their_clients(redis_server, tcp_proxy):
    proxy = tcp_proxy(redis_server.port)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as through:
        through.sendall(b"PING\r\n")
        assert through.recv(64) == b"+PONG\r\n"
        assert proxy.drop_connections() == 2  # the client's side and the server's
        assert through.recv(64) == b""
