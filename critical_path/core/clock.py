"""The database's clock: every time critical_path records or compares is the database's, never a host's."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import connections
from django.utils.dateparse import parse_datetime

#: The current time in SQL, per vendor, as ``Now()`` gives it (SQLite: the text Django stores, in UTC).
NOW_SQL = {"postgresql": "STATEMENT_TIMESTAMP()", "sqlite": "STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')"}


def from_sqlite(value: str | datetime) -> datetime:
    """A datetime SQLite returned raw (the text it stored, or a naive datetime), in UTC, as Django would give it."""
    parsed = parse_datetime(value) if isinstance(value, str) else value
    if parsed is None:
        raise ValueError(f"not a datetime: {value!r}")
    if not settings.USE_TZ:
        return parsed.replace(tzinfo=None)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def now(using: str) -> datetime:
    """The database's current time."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + NOW_SQL[connection.vendor])
        raw = cursor.fetchone()[0]
    return from_sqlite(raw) if connection.vendor == "sqlite" else raw
