"""The emit's INSERT: one parameterised statement per vendor, for one job or a batch's many.

The ORM's model machinery costs more than the rest of an emit together, so the
outbox writes its jobs with this statement instead of ``bulk_create``. It
names every column the emit sets, takes the times from the database's clock
(a delay is added there), skips a row whose idempotency key is taken
(``ON CONFLICT ... DO NOTHING``), and returns what the job needs to be filled
in: id, key and times of the rows it wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from critical_path.models import Job

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

_COLUMNS = (
    "effect", "version", "args", "kwargs", "idempotency_key", "status", "attempts", "max_attempts",
    "queue", "priority", "republished", "correlation_id", "trace_context", "last_error", "error_history",
    "coalesce_key", "created_at", "available_at", "ordering_key", "uuid",
)  # fmt: skip

_VALUES = {
    # %s: effect, version, args, kwargs, key, max_attempts, queue, priority, correlation id, trace context,
    # coalesce key, delay, ordering key, UUID
    "postgresql": (
        "%s, %s, %s::jsonb, %s::jsonb, %s, 'pending', 0, %s, %s, %s, 0, %s, %s, '', '[]'::jsonb, %s, "
        "STATEMENT_TIMESTAMP(), STATEMENT_TIMESTAMP() + %s, %s, %s"
    ),
    "sqlite": (
        "%s, %s, %s, %s, %s, 'pending', 0, %s, %s, %s, 0, %s, %s, '', '[]', %s, "
        "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW'), STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', %s), %s, %s"
    ),
}

#: The database vendors the outbox can write to (check ``critical_path.E003``).
SUPPORTED_VENDORS = tuple(_VALUES)

#: Rows one multi-row INSERT of a batch writes at most (SQLite allows 32,766 parameters; 14 per row).
MAX_ROWS_PER_INSERT = 100

_sql_cache: dict[tuple[str, int], str] = {}


def insert_sql(connection: BaseDatabaseWrapper, rows: int = 1) -> str:
    """The emit's INSERT of ``rows`` jobs, returning id, key and times of those it wrote (not the key's duplicates)."""
    sql = _sql_cache.get((connection.vendor, rows))
    if sql is None:
        quote = connection.ops.quote_name
        key = quote("idempotency_key")
        sql = "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) WHERE {} IS NOT NULL DO NOTHING RETURNING {}".format(
            quote(Job._meta.db_table),
            ", ".join(quote(column) for column in _COLUMNS),
            ", ".join([f"({_VALUES[connection.vendor]})"] * rows),
            key,
            key,
            ", ".join(quote(column) for column in ("id", "idempotency_key", "created_at", "available_at")),
        )
        _sql_cache[(connection.vendor, rows)] = sql
    return sql
