"""A PostgreSQL cluster of the test's own: killed, stopped and restarted, its sessions terminated."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.faults.servers import Server, accepts, as_user, owned_directory
from tests.helpers import wait_for


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
        self._wait_for_the_old_shared_memory()
        super().start(timeout)

    def _wait_for_the_old_shared_memory(self, timeout: float = 10.0) -> None:
        """After a kill, wait until no process of the old server is attached to its shared memory.

        A backend the killed postmaster forked may still be exiting when its process group looks gone; a server
        started then refuses to run ("pre-existing shared memory block is still in use").
        """
        try:
            shmid = (self.data / "postmaster.pid").read_text().splitlines()[6].split()[1]
        except (OSError, IndexError):
            return

        def detached() -> bool:
            for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1] == shmid:
                    return fields[6] == "0"  # nattch
            return True

        wait_for(detached, timeout=timeout, interval=0.05, message="the killed server's shared memory released")

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
