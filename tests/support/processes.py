"""The processes of a deployment, started for real: Celery workers, relays, and emitters standing in for web processes.

Each runs ``tests.faults.settings`` (the test settings, tuned from the
environment) on the test databases, against the broker (and optionally the
database server) the test names, with the ``CRITICAL_PATH_*`` knobs it passes;
``crash_points`` makes it die at a named step. Every process is in its own
session and is stopped with its whole process group (the servers of
``tests.faults`` are too). The settings and the emitter are named, not imported:
only the processes started load them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from critical_path.core.crashpoints import ENVIRONMENT_VARIABLE as CRASH_POINTS
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


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


class Process:
    """One started process: its output, its exit, and signals to its process group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.log = name, command, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.output() or not self.running, timeout=timeout, message=f"{self.name}: {text!r}")
        assert text in self.output(), (
            f"{self.name} exited ({self.process.returncode}) before {text!r}:\n{self.output()}"
        )

    def wait(self, timeout: float = 30.0) -> int:
        """Its exit code, once it exits by itself within ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.output()}") from None

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: a graceful stop."""
        end_group(self.process, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL to the whole group: the process and its children die at once."""
        end_group(self.process, signal.SIGKILL)

    def members(self) -> list[int]:
        """The other live processes of its group: a prefork worker's pool processes, say."""
        return [pid for pid in group_pids(self.pid) if pid != self.pid]

    def pause(self) -> None:
        signal_group(self.process, signal.SIGSTOP)

    def resume(self) -> None:
        signal_group(self.process, signal.SIGCONT)


class Emitter(Process):
    """Prints one JSON line per emitted job (see ``tests.faults.emitter``)."""

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith('{"')]


class Launcher:
    """Starts processes for one test and stops every one of them when the test ends."""

    def __init__(self, log_dir: Path, database_url: str | None = None) -> None:
        self.log_dir = log_dir
        self.database_url = database_url
        #: The queue side effects are routed to and workers consume.
        self.queue = f"critical-path-faults-{uuid.uuid4().hex[:8]}"
        self.processes: list[Process] = []

    def environment(
        self, broker_url: str | None, *, crash_points: tuple[str, ...] = (), **knobs: Any
    ) -> dict[str, str]:
        """The environment of a process: ``relay_grace=0.1`` sets ``CRITICAL_PATH_RELAY_GRACE=0.1``."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("CRITICAL_PATH_")}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.faults.settings",
            CRITICAL_PATH_TEST_WORKER="1",  # the test databases, not the development ones
            CRITICAL_PATH_TEST_QUEUE=self.queue,
            PYTHONUNBUFFERED="1",
        )
        if broker_url:
            env["CELERY_BROKER_URL"] = broker_url
        for key in ("CRITICAL_PATH_TEST_DB_PREFIX", "CRITICAL_PATH_TEST_DATA"):
            if key in os.environ:
                env[key] = os.environ[key]
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if crash_points:
            env[CRASH_POINTS] = ",".join(crash_points)
        for name, value in knobs.items():
            env[f"CRITICAL_PATH_{name.upper()}"] = str(value)
        return env

    def name(self, role: str) -> str:
        """``worker-0``, ``worker-1``…: unique among this test's processes."""
        return f"{role}-{sum(process.name.startswith(role + '-') for process in self.processes)}"

    def start(self, kind: type[Process], name: str, command: list[str], env: dict[str, str]) -> Process:
        process = kind(name, command, env, self.log_dir / f"{name}.log")
        self.processes.append(process)
        return process

    def worker(
        self,
        broker_url: str,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        ready: bool = True,
        environ: dict[str, str] | None = None,
        **options: Any,
    ) -> Process:
        """A Celery worker consuming the test's queue; by default, returned once it is ready.

        ``environ`` adds variables of other names to its environment (``PROMETHEUS_MULTIPROC_DIR``, say).
        """
        name = self.name("worker")
        command = [
            sys.executable, "-m", "celery", "-A", "tests", "worker", "-Q", self.queue, "-c", str(concurrency),
            "-P", pool, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
            "-n", f"{name}.{self.queue}@%h",
        ]  # fmt: skip
        worker = self.start(Process, name, command, {**self.environment(broker_url, **options), **(environ or {})})
        if ready:
            worker.wait_for_output(" ready.", timeout=60)
        return worker

    def relay(self, broker_url: str, *, once: bool = False, interval: float = 0.2, **options: Any) -> Process:
        """``relay_outbox``: one pass (``once``) or a loop every ``interval`` seconds."""
        command = [sys.executable, "-m", "django", "relay_outbox", "--interval", str(interval)]
        if once:
            command.append("--once")
        return self.start(Process, self.name("relay"), command, self.environment(broker_url, **options))

    def emitter(
        self,
        broker_url: str,
        *,
        count: int,
        key_prefix: str,
        per_transaction: int = 1,
        effect: str = "tests.effects.note",
        ordering_keys: int = 0,
        **options: Any,
    ) -> Emitter:
        """A web process stand-in emitting ``count`` jobs keyed ``<key_prefix>-<n>``, then exiting.

        With ``ordering_keys``, job ``n`` has the ordering key ``<key_prefix>:<n mod ordering_keys>``.
        """
        command = [
            sys.executable, "-m", "tests.faults.emitter", "--count", str(count), "--key-prefix", key_prefix,
            "--per-transaction", str(per_transaction), "--effect", effect, "--ordering-keys", str(ordering_keys),
        ]  # fmt: skip
        emitter = self.start(Emitter, self.name("emitter"), command, self.environment(broker_url, **options))
        assert isinstance(emitter, Emitter)
        return emitter

    def manage(self, *args: str, broker_url: str | None = None, timeout: float = 120.0) -> str:
        """Run a management command to completion (``manage("migrate", "--database", "other")``); its output."""
        done = subprocess.run(
            [sys.executable, "-m", "django", *args], cwd=ROOT, env=self.environment(broker_url), capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"manage {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def close(self) -> None:
        """SIGTERM to every process at once, then each is waited for (SIGKILL after 5 s)."""
        for process in self.processes:
            process.resume()
            signal_group(process.process, signal.SIGTERM)
        for process in reversed(self.processes):
            process.terminate(timeout=5)
