"""Writing jobs in the caller's transaction, and handing them off after it commits.

``emit`` is the request's whole cost of a side effect: one parameterised INSERT
(the ORM's model machinery costs more than the rest of the emit together) and
one ``on_commit`` callback. Broker I/O happens later, on the dispatcher's thread.
``replay`` and ``discard`` are the one implementation behind the admin, the
management commands and the Python API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from critical_path.conf import settings
from critical_path.core import clock, context, correlation
from critical_path.exceptions import IdempotencyConflict
from critical_path.models import Job, JobQuerySet
from critical_path.observability import metrics, tracing
from critical_path.outbox import batch as batching
from critical_path.publishing import dispatcher as dispatch
from critical_path.publishing.handoff import HANDOFF_COLUMNS, Handoff

if TYPE_CHECKING:
    from critical_path.outbox.effects import SideEffect

_COLUMNS = (
    "effect", "version", "args", "kwargs", "idempotency_key", "status", "attempts", "max_attempts",
    "queue", "priority", "republished", "correlation_id", "trace_context", "last_error", "error_history",
    "coalesce_key", "created_at", "available_at", "ordering_key",
)  # fmt: skip

_VALUES = {
    # %s: effect, version, args, kwargs, key, max_attempts, queue, priority, correlation id, trace context,
    # coalesce key, delay, ordering key
    "postgresql": (
        "%s, %s, %s::jsonb, %s::jsonb, %s, 'pending', 0, %s, %s, %s, 0, %s, %s, '', '[]'::jsonb, %s, "
        "STATEMENT_TIMESTAMP(), STATEMENT_TIMESTAMP() + %s, %s"
    ),
    "sqlite": (
        "%s, %s, %s, %s, %s, 'pending', 0, %s, %s, %s, 0, %s, %s, '', '[]', %s, "
        "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW'), STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', %s), %s"
    ),
}

SUPPORTED_VENDORS = tuple(_VALUES)

#: Rows one multi-row INSERT of a batch writes at most (SQLite allows 32,766 parameters; 12 per row).
MAX_ROWS_PER_INSERT = 100

_sql_cache: dict[tuple[str, int], str] = {}

#: Called with each emitted side effect and its job: ``critical_path.testing.capture_side_effects`` listens
#: here. Empty outside such a block, which costs ``emit`` one truth test.
observers: list[Callable[[SideEffect[Any, Any], Job], None]] = []


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


class Emit(NamedTuple):
    """One side effect on its way into the outbox: the unsaved job, and the INSERT's parameters for it."""

    effect: SideEffect[Any, Any]
    job: Job
    params: list[Any]


def emit(
    effect: SideEffect[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    args_json: str,
    kwargs_json: str,
    coalesce_key: str | None = None,
) -> Job:
    """Insert the job on its database and hand it off when the transaction commits.

    Inside ``batch()``, the job is only buffered: it is inserted with the
    batch's other jobs when the block exits (see ``critical_path.outbox.batch``).
    """
    options = effect.options
    database = options.database or router.db_for_write(Job)
    connection = connections[database]
    queue = options.queue or effect.queue or default_queue()
    priority = effect.priority if options.priority is None else options.priority
    max_attempts = effect.max_attempts or settings.MAX_ATTEMPTS
    running = context.current_job_or_none()
    correlation_id = running.correlation_id if running else (correlation.get() or correlation.new())
    trace_context = tracing.current()
    delay = options.delay
    if connection.vendor == "sqlite":
        delay_param: timedelta | str = f"+{delay.total_seconds():.6f} seconds"
    else:
        delay_param = delay
    params: list[Any] = [effect.path, effect.version, args_json, kwargs_json, options.key, max_attempts, queue]
    params += [priority, correlation_id, trace_context, coalesce_key, delay_param, options.ordering_key]
    job = Job(
        effect=effect.path, version=effect.version, args=list(args), kwargs=dict(kwargs),
        idempotency_key=options.key, status=Job.Status.PENDING, attempts=0, max_attempts=max_attempts, queue=queue,
        priority=priority, republished=0, correlation_id=correlation_id, trace_context=trace_context,
        coalesce_key=coalesce_key, last_error="", error_history=[], ordering_key=options.ordering_key,
    )  # fmt: skip
    pending = Emit(effect, job, params)
    buffer = batching.buffer_for(database, connection)
    if buffer is not None:
        buffer.append(pending)
    else:
        insert(database, [pending])
    if observers:
        _observe(effect, job)
    return job


def _observe(effect: SideEffect[Any, Any], job: Job) -> None:
    for observer in list(observers):
        observer(effect, job)


def insert(database: str, emits: Sequence[Emit]) -> None:
    """Write jobs with one INSERT per ``MAX_ROWS_PER_INSERT``; fill in each job; hand them off on commit.

    A job whose idempotency key is taken (by a stored job, or by an earlier one
    of ``emits``) takes the values of the job holding it, if its arguments are
    the same, and is not handed off again.
    """
    connection = connections[database]
    for start in range(0, len(emits), MAX_ROWS_PER_INSERT):
        chunk = emits[start : start + MAX_ROWS_PER_INSERT]
        with connection.cursor() as cursor:
            cursor.execute(insert_sql(connection, len(chunk)), [param for item in chunk for param in item.params])
            # Rows come back in the order they were inserted, which is the ids' order (Django's bulk_create
            # relies on the same); duplicates of a key are the ones missing.
            rows = sorted(cursor.fetchall())
        written = iter(rows)
        row = next(written, None)
        for item in chunk:
            job = item.job
            if row is None or (job.idempotency_key is not None and row[1] != job.idempotency_key):
                _take_existing(item.effect, database, job)
                continue
            _saved(database, item, row, connection.vendor)
            row = next(written, None)


def _saved(database: str, item: Emit, row: tuple[Any, ...], vendor: str) -> None:
    job = item.job
    job.id, _, created_at, available_at = row
    if vendor == "sqlite":
        created_at, available_at = clock.from_sqlite(created_at), clock.from_sqlite(available_at)
    job.created_at, job.available_at = created_at, available_at
    job._state.adding = False
    job._state.db = database
    metrics.count("emitted", job.effect, job.queue)
    if not item.effect.options.delay:  # delayed jobs wait for the relay
        handoff = Handoff(database, job.id, job.effect, job.queue, job.priority, job.correlation_id, job.trace_context)
        transaction.on_commit(partial(dispatch.submit, handoff), using=database, robust=True)


def _take_existing(effect: SideEffect[Any, Any], database: str, job: Job) -> None:
    existing = Job.objects.using(database).get(idempotency_key=job.idempotency_key)
    if existing.effect != effect.path or existing.args != job.args or existing.kwargs != job.kwargs:
        raise IdempotencyConflict(
            f"Job #{existing.pk} already holds the idempotency key {job.idempotency_key!r} for {existing.effect}"
            f"(*{existing.args!r}, **{existing.kwargs!r}); emitting {effect.path} with other arguments under the "
            f"same key is refused. Use a key that identifies these arguments, or emit without one."
        )
    for field in Job._meta.concrete_fields:
        setattr(job, field.attname, getattr(existing, field.attname))
    job._state.adding = False
    job._state.db = database


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
    handoffs = [Handoff(database, *row) for row in locked.values_list(*HANDOFF_COLUMNS)]
    # The rows are locked (PostgreSQL) or the transaction holds the write lock (SQLite): they all move.
    Job.objects.using(database).filter(pk__in=[handoff.job_id for handoff in handoffs]).replay()
    for handoff in handoffs:
        metrics.count("replayed", handoff.effect, handoff.queue)
        transaction.on_commit(partial(dispatch.submit, handoff), using=database, robust=True)
    return [handoff.job_id for handoff in handoffs]


def _discard_batch(queryset: JobQuerySet, database: str) -> list[int]:
    locked = queryset.discardable().select_for_update(skip_locked=True)
    rows = list(locked.values_list("pk", "effect", "queue", "ordering_key"))
    ids = [row[0] for row in rows]
    Job.objects.using(database).filter(pk__in=ids).discard()
    for _, effect, queue, _key in rows:
        metrics.count("discarded", effect, queue)
    keys = {key for *_, key in rows if key is not None}
    if keys:  # a discarded job may have been the head of its key's line: the next one's turn has come
        transaction.on_commit(partial(dispatch.hand_off_next, database, keys), using=database, robust=True)
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
