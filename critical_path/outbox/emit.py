"""``emit``: a side effect's job, built in the caller's transaction and written now or with its batch.

``emit`` is the request's whole cost of a side effect: the job's values worked
out from the side effect, its ``.using()`` options and the settings, then one
parameterised INSERT (``write``) and one ``on_commit`` callback, or a place in
the enclosing ``batch()``. Broker I/O happens later, on the dispatcher's thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from celery import current_app
from django.db import connections, router

from critical_path.conf import settings
from critical_path.core import context, correlation
from critical_path.models import Job, new_uuid
from critical_path.observability import tracing
from critical_path.outbox.batch import buffer_for
from critical_path.outbox.write import Emit, write
from critical_path.publishing.handoff import handed_off_early


class EmitOptions(Protocol):
    """The per-emit options ``emit`` reads (``critical_path.outbox.effects.Options``)."""

    @property
    def key(self) -> str | None: ...
    @property
    def delay(self) -> timedelta: ...
    @property
    def database(self) -> str | None: ...
    @property
    def queue(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def ordering_key(self) -> str | None: ...


class Emitting(Protocol):
    """What ``emit`` reads of the side effect it emits (``critical_path.outbox.effects.SideEffect``)."""

    @property
    def path(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def max_attempts(self) -> int | None: ...
    @property
    def queue(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def options(self) -> EmitOptions: ...


#: Called with each emitted side effect and its job: ``critical_path.testing.capture_side_effects`` listens
#: here. Empty outside such a block, which costs ``emit`` one truth test.
observers: list[Callable[[Emitting, Job], None]] = []


def emit(
    effect: Emitting,
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
    key = new_uuid()
    if connection.vendor == "sqlite":  # as Django's SQLite backend stores them
        delay_param: timedelta | str = f"+{delay.total_seconds():.6f} seconds"
        key_param: uuid.UUID | str = key.hex
    else:
        delay_param, key_param = delay, key
    params: list[Any] = [effect.path, effect.version, args_json, kwargs_json, options.key, max_attempts, queue]
    params += [priority, correlation_id, trace_context, coalesce_key, delay_param, options.ordering_key, key_param]
    job = Job(
        uuid=key, effect=effect.path, version=effect.version, args=list(args), kwargs=dict(kwargs),
        idempotency_key=options.key, status=Job.Status.PENDING, attempts=0, max_attempts=max_attempts, queue=queue,
        priority=priority, republished=0, correlation_id=correlation_id, trace_context=trace_context,
        coalesce_key=coalesce_key, last_error="", error_history=[], ordering_key=options.ordering_key,
    )  # fmt: skip
    # A delayed job is handed off now with its due time if that is soon, else it waits for the relay.
    pending = Emit(job, params, hand_off=not delay or handed_off_early(delay))
    buffer = buffer_for(database, connection)
    if buffer is not None:
        buffer.append(pending)
    else:
        write(database, [pending])
    if observers:
        _observe(effect, job)
    return job


def _observe(effect: Emitting, job: Job) -> None:
    for observer in list(observers):
        observer(effect, job)


def default_queue() -> str:
    """The queue of a job whose side effect and options name none: ``CRITICAL_PATH_DEFAULT_QUEUE``, else Celery's."""
    queue = settings.DEFAULT_QUEUE
    if queue is None:
        queue = current_app.conf.task_default_queue
    return queue
