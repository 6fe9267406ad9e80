"""Servers a fault-injection test owns, each on a free port: killed, paused and restarted at will.

Here: what every server shares, and Redis; PostgreSQL and RabbitMQ have modules
of their own. The shared services (PostgreSQL on 5432, Redis on 6379, RabbitMQ on 5672) are
never signalled; every server here is a child of the test, in its own session,
so a whole process group can be stopped without touching anything else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

from tests.helpers import wait_for
from tests.support.processes import end_group, signal_group


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def as_user(user: str) -> list[str]:
    """Prefix for a command that refuses to run as root (PostgreSQL, RabbitMQ)."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def owned_directory(prefix: str, user: str) -> Path:
    """A new directory outside pytest's root-only temporary tree, owned by ``user`` when running as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


class Server:
    """A server process started in its own session, with its output in ``directory/<name>.log``."""

    name = "server"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.log = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return accepts(self.port)

    def start(self, timeout: float = 30.0) -> None:
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), cwd=self.directory, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(lambda: self.ready() or not self.running, timeout=timeout, interval=0.1, message=f"{self.name} up")
        assert self.running, f"{self.name} exited:\n{self.output()}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM; a paused server is resumed first), SIGKILL after ``timeout``."""
        if self.process is not None:
            if self.running:
                self.resume()
                self.shut_down(timeout)
            end_group(self.process, signal.SIGTERM, timeout)

    def shut_down(self, timeout: float) -> None:
        """Ask the server to shut down its own way, before SIGTERM."""

    def kill(self) -> None:
        """Die at once with everything it started, as a crash or a pulled plug would."""
        if self.process is not None:
            end_group(self.process, signal.SIGKILL)

    def pause(self) -> None:
        """Freeze (SIGSTOP): connections stay open and nothing answers, as a hung server."""
        assert self.process is not None
        signal_group(self.process, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        signal_group(self.process, signal.SIGCONT)

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port, with the same data."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop cleanly at the end of a test (a server that shuts itself down leaves no orphans to reap)."""
        self.stop(timeout=5)


class RedisServer(Server):
    """A redis-server that keeps nothing on disk: a restart loses every message, as a crash would."""

    name = "redis"

    def command(self) -> list[str]:
        return [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory),
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    def ready(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except Exception:
            return False

    def queue_length(self, queue: str) -> int:
        """Messages waiting in a Celery queue (all its priority lists)."""
        with self.client() as client:
            return sum(client.llen(key) for key in client.keys(f"{queue}*"))

    def flush_queue(self, queue: str) -> int:
        """Drop a Celery queue's waiting messages, as a broker that loses them would; returns how many."""
        with self.client() as client:
            keys = client.keys(f"{queue}*")
            count = sum(client.llen(key) for key in keys)
            if keys:
                client.delete(*keys)
            return count
