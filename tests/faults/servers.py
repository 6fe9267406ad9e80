"""Servers a fault-injection test owns: killed, paused and restarted at will, each on a free port.

The shared services (PostgreSQL on 5432, Redis on 6379, RabbitMQ on 5672) are
never signalled; every server here is a child of the test, in its own session,
so a whole process group can be stopped without touching anything else.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any, Self

from tests.helpers import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def end_group(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``signum`` to the process group, SIGKILL it if the leader has not exited within ``timeout``.

    Members that outlive their leader (a worker's pool processes) get SIGKILL too,
    and it returns once none is left: a server restarted at once must not find
    its predecessor's processes (PostgreSQL refuses to start beside its lock file's owner).
    """
    if process.poll() is None:
        signal_group(process, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        signal_group(process, signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()
    signal_group(process, signal.SIGKILL)
    wait_for(lambda: not group_alive(process), timeout=10, message=f"process group {process.pid} gone")


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z":
            pids.append(int(entry.name))
    return pids


def group_alive(process: subprocess.Popen[bytes]) -> bool:
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member runs as a user this process may not signal
        return True
    return True


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


def postgres_bin() -> Path:
    """PostgreSQL's versioned bin directory (the newest installed), or the one holding ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    assert initdb, "PostgreSQL's initdb was not found (looked in /usr/lib/postgresql/*/bin and on PATH)"
    return Path(initdb).parent


class PostgresCluster(Server):
    """A PostgreSQL cluster of its own (no fsync), trusting local connections, owned by the postgres user."""

    name = "postgres"

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        super().__init__(directory or owned_directory("critical-path-pg-", "postgres"), port)
        self.bin = postgres_bin()
        self.data = self.directory / "data"

    def start(self, timeout: float = 30.0) -> None:
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                [*as_user("postgres"), str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "--no-sync",
                 "-U", "postgres"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        super().start(timeout)

    def command(self) -> list[str]:
        return [
            *as_user("postgres"), str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "listen_addresses=127.0.0.1",
            "-k", str(self.directory),
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            self.execute("SELECT 1")
        except Exception:
            return False
        return True

    def shut_down(self, timeout: float) -> None:
        """Fast shutdown (SIGINT to the postmaster): sessions are ended, then the server stops."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
            wait_for(lambda: not accepts(self.port), timeout=timeout, message="postgres shut down")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, params: tuple[Any, ...] = (), database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit; returns its rows (none for statements that return none)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=2) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> None:
        self.execute(f'CREATE DATABASE "{name}"')

    def terminate_backends(self, database: str | None = None) -> int:
        """End every other client session (``pg_terminate_backend``), as a dropped connection; returns how many."""
        rows = self.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND (%s::text IS NULL OR datname = %s)",
            (database, database),
        )
        return int(rows[0][0])

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.directory, ignore_errors=True)


def rabbitmq_bin() -> Path:
    """RabbitMQ's own scripts; Debian's /usr/sbin wrappers switch user and drop the node's environment."""
    if Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return Path("/usr/lib/rabbitmq/bin")
    server = shutil.which("rabbitmq-server")
    assert server, "rabbitmq-server was not found"
    return Path(server).parent


class RabbitMQNode(Server):
    """A RabbitMQ node of its own: its name, ports, cookie, configuration and data; no plugins.

    It registers with the host's epmd like any node, and touches no other node.
    """

    name = "rabbitmq"

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        super().__init__(directory or owned_directory("critical-path-rabbitmq-", "rabbitmq"), port)
        self.bin = rabbitmq_bin()
        self.node = f"critical-path-{uuid.uuid4().hex[:8]}@localhost"
        self.dist_port = free_port()
        files = {
            "rabbitmq.conf": f"listeners.tcp.1 = 127.0.0.1:{self.port}\n",
            "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "",
        }
        for name, text in files.items():
            (self.directory / name).write_text(text)
            if os.geteuid() == 0:
                shutil.chown(self.directory / name, "rabbitmq", "rabbitmq")

    def variables(self) -> dict[str, str]:
        here = self.directory
        return {
            "HOME": str(here),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(here / "mnesia"),
            "RABBITMQ_LOG_BASE": str(here / "log"),
            "RABBITMQ_PID_FILE": str(here / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(here / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(here / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(here / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(here / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def tool(self, name: str) -> list[str]:
        # runuser resets part of the environment, so the node's variables are given with env(1).
        variables = [f"{key}={value}" for key, value in self.variables().items()]
        return [*as_user("rabbitmq"), "env", *variables, str(self.bin / name)]

    def command(self) -> list[str]:
        return self.tool("rabbitmq-server")

    def ready(self) -> bool:
        from kombu import Connection

        if not accepts(self.port):
            return False
        try:
            with Connection(self.url, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception:
            return False
        return True

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def shut_down(self, timeout: float) -> None:
        """``rabbitmqctl stop``: the node shuts down cleanly."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([*self.tool("rabbitmqctl"), "-n", self.node, "stop"], capture_output=True, timeout=timeout)

    def close(self) -> None:
        self.kill()  # quicker than rabbitmqctl stop, and the node's data goes with it
        shutil.rmtree(self.directory, ignore_errors=True)
