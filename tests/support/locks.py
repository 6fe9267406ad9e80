"""A second connection to the test database, holding row locks as a concurrent process would (PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tests.helpers import wait_for


def connect(alias: str = "default") -> Any:
    """A psycopg connection of its own to the database of ``alias`` (outside Django), in a transaction."""
    import psycopg
    from django.db import connections

    settings = connections[alias].settings_dict
    return psycopg.connect(
        dbname=settings["NAME"],
        user=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
        host=settings.get("HOST") or None,
        port=settings.get("PORT") or None,
        autocommit=False,
    )


@contextlib.contextmanager
def second_connection(alias: str = "default") -> Iterator[Any]:
    """A second session; its transaction is rolled back on the way out unless the test committed it."""
    connection = connect(alias)
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


def waiting_on_a_lock(alias: str = "default") -> int:
    """How many sessions on the database of ``alias`` wait for a lock now."""
    from django.db import connections

    with connect(alias) as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            [connections[alias].settings_dict["NAME"]],
        ).fetchone()
    return int(row[0]) if row else 0


def wait_until_blocked(alias: str = "default", timeout: float = 20.0) -> None:
    wait_for(lambda: waiting_on_a_lock(alias) > 0, timeout=timeout, message="a session waiting on the held lock")
