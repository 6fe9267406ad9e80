"""Writing jobs in the caller's transaction, and handing them off after it commits.

``emit`` is the request's whole cost of a side effect: one parameterised INSERT
(the ORM's model machinery costs more than the rest of the emit together) and
one ``on_commit`` callback. Broker I/O happens later, on the dispatcher's thread.
``replay`` and ``discard`` are the one implementation behind the admin, the
management commands and the Python API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from critical_path import clock, context, correlation, dispatch, metrics
from critical_path.conf import settings
from critical_path.exceptions import IdempotencyConflict
from critical_path.models import Job, JobQuerySet
from critical_path.publisher import Handoff

if TYPE_CHECKING:
    from critical_path.side_effects import SideEffect

_COLUMNS = (
    "effect", "version", "args", "kwargs", "idempotency_key", "status", "attempts", "max_attempts",
    "queue", "priority", "republished", "correlation_id", "last_error", "error_history", "created_at", "available_at",
)  # fmt: skip

_VALUES = {
    # %s: effect, version, args, kwargs, key, max_attempts, queue, priority, correlation id, delay
    "postgresql": (
        "%s, %s, %s::jsonb, %s::jsonb, %s, 'pending', 0, %s, %s, %s, 0, %s, '', '[]'::jsonb, "
        "STATEMENT_TIMESTAMP(), STATEMENT_TIMESTAMP() + %s"
    ),
    "sqlite": (
        "%s, %s, %s, %s, %s, 'pending', 0, %s, %s, %s, 0, %s, '', '[]', "
        "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW'), STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', %s)"
    ),
}

SUPPORTED_VENDORS = tuple(_VALUES)

_sql_cache: dict[str, str] = {}


def insert_sql(connection: BaseDatabaseWrapper) -> str:
    sql = _sql_cache.get(connection.vendor)
    if sql is None:
        quote = connection.ops.quote_name
        sql = "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING RETURNING {}, {}, {}".format(
            quote(Job._meta.db_table),
            ", ".join(quote(column) for column in _COLUMNS),
            _VALUES[connection.vendor],
            quote("idempotency_key"),
            quote("id"),
            quote("created_at"),
            quote("available_at"),
        )
        _sql_cache[connection.vendor] = sql
    return sql


def emit(
    effect: SideEffect[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], args_json: str, kwargs_json: str
) -> Job:
    """Insert the job on its database and hand it off when the transaction commits."""
    options = effect.options
    database = options.database or router.db_for_write(Job)
    connection = connections[database]
    queue = options.queue or effect.queue or default_queue()
    priority = effect.priority if options.priority is None else options.priority
    max_attempts = effect.max_attempts or settings.MAX_ATTEMPTS
    running = context.current_job_or_none()
    correlation_id = running.correlation_id if running else (correlation.get() or correlation.new())
    delay = options.delay
    if connection.vendor == "sqlite":
        delay_param: timedelta | str = f"+{delay.total_seconds():.6f} seconds"
    else:
        delay_param = delay
    params: list[Any] = [
        effect.path,
        effect.version,
        args_json,
        kwargs_json,
        options.key,
        max_attempts,
        queue,
        priority,
    ]
    params += [correlation_id, delay_param]
    with connection.cursor() as cursor:
        cursor.execute(insert_sql(connection), params)
        row = cursor.fetchone()
    if row is None:
        return _existing(effect, database, options.key, args, kwargs)
    job_id, created_at, available_at = row
    if connection.vendor == "sqlite":
        created_at, available_at = clock.from_sqlite(created_at), clock.from_sqlite(available_at)
    job = Job(
        id=job_id, effect=effect.path, version=effect.version, args=list(args), kwargs=dict(kwargs),
        idempotency_key=options.key, status=Job.Status.PENDING, attempts=0, max_attempts=max_attempts, queue=queue,
        priority=priority,
        republished=0, correlation_id=correlation_id, created_at=created_at, available_at=available_at,
        last_error="", error_history=[],
    )  # fmt: skip
    job._state.adding = False
    job._state.db = database
    metrics.count("emitted", effect.path, queue)
    if not delay:
        handoff = Handoff(database, job_id, effect.path, queue, priority, correlation_id)
        transaction.on_commit(partial(dispatch.submit, handoff), using=database, robust=True)
    return job


def _existing(
    effect: SideEffect[Any, Any], database: str, key: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Job:
    job = Job.objects.using(database).get(idempotency_key=key)
    if job.effect != effect.path or job.args != list(args) or job.kwargs != kwargs:
        raise IdempotencyConflict(
            f"Job #{job.pk} already holds the idempotency key {key!r} for {job.effect}"
            f"(*{job.args!r}, **{job.kwargs!r}); emitting {effect.path} with other arguments under the same "
            f"key is refused. Use a key that identifies these arguments, or emit without one."
        )
    return job


def default_queue() -> str:
    queue = settings.DEFAULT_QUEUE
    if queue is None:
        from celery import current_app

        queue = current_app.conf.task_default_queue
    return queue


#: Called inside each batch's transaction with the database and the ids of the jobs the batch moved.
OnBatch = Callable[[str, list[int]], None]


def replay(
    jobs: JobQuerySet | Iterable[int],
    *,
    using: str | None = None,
    batch_size: int = 500,
    on_batch: OnBatch | None = None,
) -> int:
    """Dead or failed jobs → pending, attempts reset, history kept; published after each batch commits.

    Works in batches, one transaction each, so replaying 40,000 jobs holds no
    long lock. Jobs another process moved in the meantime are skipped. Returns
    how many were replayed. ``on_batch`` (an audit trail, say) runs inside each
    batch's transaction, so it records exactly what the batch moved.
    """
    return _in_batches(jobs, using, batch_size, _replay_batch, on_batch)


def discard(
    jobs: JobQuerySet | Iterable[int],
    *,
    using: str | None = None,
    batch_size: int = 500,
    on_batch: OnBatch | None = None,
) -> int:
    """Pending, enqueued, failed or dead jobs → discarded. Returns how many were discarded."""
    return _in_batches(jobs, using, batch_size, _discard_batch, on_batch)


def _replay_batch(queryset: JobQuerySet, database: str) -> list[int]:
    locked = queryset.replayable().select_for_update(skip_locked=True)
    rows = list(locked.values_list("pk", "effect", "queue", "priority", "correlation_id"))
    # The rows are locked (PostgreSQL) or the transaction holds the write lock (SQLite): they all move.
    Job.objects.using(database).filter(pk__in=[row[0] for row in rows]).replay()
    for pk, effect, queue, priority, correlation_id in rows:
        metrics.count("replayed", effect, queue)
        transaction.on_commit(
            partial(dispatch.submit, Handoff(database, pk, effect, queue, priority, correlation_id)),
            using=database,
            robust=True,
        )
    return [row[0] for row in rows]


def _discard_batch(queryset: JobQuerySet, database: str) -> list[int]:
    rows = list(queryset.discardable().select_for_update(skip_locked=True).values_list("pk", "effect", "queue"))
    ids = [row[0] for row in rows]
    Job.objects.using(database).filter(pk__in=ids).discard()
    for _, effect, queue in rows:
        metrics.count("discarded", effect, queue)
    return ids


def _in_batches(
    jobs: JobQuerySet | Iterable[int],
    using: str | None,
    batch_size: int,
    apply: Callable[[JobQuerySet, str], list[int]],
    on_batch: OnBatch | None,
) -> int:
    if isinstance(jobs, JobQuerySet):
        database = using or jobs.db
        ids = list(jobs.using(database).values_list("pk", flat=True))
    else:
        database = using or router.db_for_write(Job)
        ids = list(jobs)
    total = 0
    for start in range(0, len(ids), batch_size):
        with transaction.atomic(using=database):
            batch = Job.objects.using(database).filter(pk__in=ids[start : start + batch_size])
            moved = apply(batch, database)
            if moved and on_batch is not None:
                on_batch(database, moved)
            total += len(moved)
    return total
