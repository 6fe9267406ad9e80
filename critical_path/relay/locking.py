"""How relays share a database: one at a time on SQLite, side by side, with bounded waits, on PostgreSQL.

Relays on PostgreSQL share a database through ``FOR UPDATE SKIP LOCKED``, each
transaction bounded by statement and lock timeouts (``limited``); on SQLite a
second relay would read the rows the first is publishing, so the relay holds an
exclusive ``flock`` on a file beside the database instead (``exclusive``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

from django.db import connections, transaction

from critical_path.conf import settings
from critical_path.exceptions import RelayBusy

_held: dict[str, tuple[int, int]] = {}  # lock file path → (thread ident, file descriptor)
_held_lock = threading.Lock()


@contextlib.contextmanager
def exclusive(database: str) -> Iterator[None]:
    """Hold ``database`` for this relay; re-entrant in one thread, ``RelayBusy`` for anyone else."""
    connection = connections[database]
    in_memory = getattr(connection, "is_in_memory_db", lambda: False)()  # SQLite's: nothing to share
    if connection.features.has_select_for_update_skip_locked or in_memory:
        yield
        return
    path = f"{connection.settings_dict['NAME']}.relay-lock"
    with _held_lock:
        holder = _held.get(path)
        if holder and holder[0] != threading.get_ident():
            raise _busy(database, path)
        owner = holder is None
        if owner:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(database, path) from None
            _held[path] = (threading.get_ident(), fd)
    try:
        yield
    finally:
        if owner:
            with _held_lock:
                os.close(_held.pop(path)[1])  # closing the file releases the lock


def _busy(database: str, path: str) -> RelayBusy:
    return RelayBusy(
        f"Another relay is running on database {database!r} (it holds {path}). SQLite runs one relay at a time: "
        "stop the other relay first, or use PostgreSQL to run several side by side."
    )


@contextlib.contextmanager
def limited(database: str) -> Iterator[None]:
    """A transaction whose statements and lock waits are bounded by ``RELAY_DATABASE_TIMEOUT`` (PostgreSQL)."""
    with transaction.atomic(using=database):
        connection = connections[database]
        if connection.vendor == "postgresql":
            milliseconds = max(1, int(settings.RELAY_DATABASE_TIMEOUT * 1000))
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                    [f"{milliseconds}ms", f"{milliseconds}ms"],
                )
        yield
