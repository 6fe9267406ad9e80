"""``write``: jobs into the outbox in the caller's transaction, handed off after it commits.

One multi-row INSERT (``critical_path.store.insert``) per ``MAX_ROWS_PER_INSERT``
jobs, each job then filled in from the row the database returned, and one
``on_commit`` callback per job that hands it to the dispatcher. A job whose
idempotency key another job holds is not written again: it becomes that job,
or raises ``IdempotencyConflict`` if its arguments differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

from django.db import connections, transaction

from critical_path.core import clock
from critical_path.exceptions import IdempotencyConflict
from critical_path.models import Job
from critical_path.observability import metrics
from critical_path.publishing import dispatcher
from critical_path.publishing.handoff import Handoff
from critical_path.store.insert import MAX_ROWS_PER_INSERT, insert_sql


class Emit(NamedTuple):
    """One job on its way into the outbox: unsaved, its INSERT's parameters, and whether commit hands it off."""

    job: Job
    params: list[Any]
    #: ``False`` for a job delayed past ``TIMED_HANDOFF_WITHIN``: it waits for the relay.
    hand_off: bool


def write(database: str, emits: Sequence[Emit]) -> None:
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
                _take_existing(database, job)
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
    if item.hand_off:
        eta = available_at if available_at > created_at else None  # a delayed job: a timed hand-off
        handoff = Handoff(
            database, job.id, job.effect, job.queue, job.priority, job.correlation_id, job.trace_context, eta
        )
        transaction.on_commit(partial(dispatcher.submit, handoff), using=database, robust=True)


def _take_existing(database: str, job: Job) -> None:
    existing = Job.objects.using(database).get(idempotency_key=job.idempotency_key)
    if existing.effect != job.effect or existing.args != job.args or existing.kwargs != job.kwargs:
        raise IdempotencyConflict(
            f"Job #{existing.pk} already holds the idempotency key {job.idempotency_key!r} for {existing.effect}"
            f"(*{existing.args!r}, **{existing.kwargs!r}); emitting {job.effect} with other arguments under the "
            f"same key is refused. Use a key that identifies these arguments, or emit without one."
        )
    for field in Job._meta.concrete_fields:
        setattr(job, field.attname, getattr(existing, field.attname))
    job._state.adding = False
    job._state.db = database
