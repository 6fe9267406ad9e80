"""A TCP proxy in front of a server, to break the network between a client and it while both keep running.

Modes, switchable at any time: pass-through; blackhole (connections are
accepted and nothing goes through either way, so the client waits for an
answer, as behind a firewall that drops packets; what was held flows again when
the blackhole lifts, unless the client gave up); added latency per chunk.
``drop_connections`` cuts every open connection, as a network failure would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Self

from tests.faults.servers import free_port


class TcpProxy:
    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.latency = 0.0
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), backlog=64)
        listener.settimeout(0.1)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name=f"proxy:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        self.drop_connections()

    # Modes.

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    def pass_through(self) -> None:
        self.latency = 0.0
        self._flowing.set()

    def blackhole(self) -> None:
        self._flowing.clear()

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it, in each direction."""
        self.latency = seconds
        self._flowing.set()

    def drop_connections(self) -> int:
        """Close every open connection on both sides; returns how many sockets were closed."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)
        return len(sockets)

    @property
    def connections(self) -> int:
        """Open sockets, client and upstream sides counted separately."""
        with self._lock:
            return len(self._sockets)

    # Plumbing.

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._track(client)
            self._spawn(self._connect, client)

    def _connect(self, client: socket.socket) -> None:
        if not self._wait_flowing():
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            self._untrack(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        self._spawn(self._pump, upstream, client)
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while not self._stopped.is_set():
                data = source.recv(65536)
                if not data or not self._wait_flowing():
                    break
                if self.latency:
                    time.sleep(self.latency)
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._untrack(source)
            self._untrack(target)

    def _wait_flowing(self) -> bool:
        """Hold while blackholed; False once the proxy stops."""
        while not self._flowing.wait(0.1):
            if self._stopped.is_set():
                return False
        return not self._stopped.is_set()

    def _spawn(self, target: Any, *args: Any) -> None:
        threading.Thread(target=target, args=args, name=f"proxy:{self.port}", daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
