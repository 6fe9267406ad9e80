"""Sending ``critical_path.deliver`` messages: shared by the dispatcher and the relay.

The message carries the job id and database alias only; the worker reads the
payload from the database. It is published with ``shadow=`` the side effect's
path, so Celery's logs, events and monitors show what ran.

Messages are built with Celery's own ``create_task_message`` and sent with
``send_task_message`` (so ``before_task_publish``/``after_task_publish`` fire
as for any task), skipping ``apply_async``'s per-call routing and settings
lookups: a third of the CPU per message. That CPU is taken from the requests
of the process the dispatcher runs in, so it matters more than its size.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from critical_path.conf import settings
from critical_path.core import registry
from critical_path.observability import metrics, tracing
from critical_path.publishing import celery_app
from critical_path.publishing.handoff import Handoff

logger = logging.getLogger(__name__)

#: The one Celery task that runs every side effect (``critical_path.tasks.deliver``).
DELIVER = "critical_path.deliver"

#: After a failed publish, the broker is treated as down for this long; the rows wait for the relay.
BROKER_DOWN_PAUSE = 5.0


def broker_priority(priority: int, transport: str) -> int:
    """Map critical_path's 0-9 (higher runs first) to the broker's own scale.

    Redis's transport consumes 0 first, so the scale is reversed there; AMQP
    queues (declared with ``x-max-priority``) run higher numbers first.
    """
    return 9 - priority if transport == "redis" else priority


def argsrepr(job_id: int, database: str) -> str:
    """How a ``critical_path.deliver`` message shows its arguments in Celery's logs, events and results."""
    return f"({job_id}, {database!r})"


class Publisher:
    """Publishes through one connection of its own, held across calls until released."""

    def __init__(self) -> None:
        self._producer: Any = None
        self._declared: set[str] = set()  # queues declared on this connection
        self._sent_event = False
        self._down_until = 0.0

    def publish(self, handoffs: Sequence[Handoff]) -> list[Handoff]:
        """Publish jobs, in one broker round trip where the transport batches; return those the broker took.

        On any broker error nothing is reported published (the relay publishes
        those rows again; delivery drops the duplicates), and the broker is
        treated as down for ``BROKER_DOWN_PAUSE`` seconds (logged once per outage).
        """
        if not handoffs or time.monotonic() < self._down_until:
            return []
        try:
            producer = self._acquire()
            transport = producer.connection.transport.driver_type
            batch = getattr(producer, "batch", None)  # kombu >= 5.7: one Redis pipeline per batch
            limits = _time_limits({handoff.effect for handoff in handoffs})
            with batch(2 * len(handoffs) + 1) if batch else contextlib.nullcontext():
                for handoff in handoffs:
                    self._send(producer, transport, handoff, *limits[handoff.effect])
        except celery_app.WrongApp:  # logged once by _acquire; the rows stay pending
            self._down_until = time.monotonic() + BROKER_DOWN_PAUSE
            return []
        except Exception as exc:  # any broker or connection error: the relay will publish them
            if self._down_until == 0.0:
                logger.warning(
                    "broker unreachable at %s (CELERY_BROKER_URL), jobs left to the relay: %s", _broker_url(), exc
                )
            self._down_until = time.monotonic() + BROKER_DOWN_PAUSE
            self.release(broken=True)
            return []
        if self._down_until:
            logger.info("broker reachable again")
            self._down_until = 0.0
        for handoff in handoffs:
            metrics.count("published", handoff.effect, handoff.queue)
        return list(handoffs)

    def _send(
        self, producer: Any, transport: str, handoff: Handoff, time_limit: float | None, soft_time_limit: float | None
    ) -> None:
        from celery import current_app
        from kombu.utils.uuid import uuid

        from critical_path.core import correlation

        app = current_app
        amqp = app.amqp
        # Celery's default queue settings apply (missing queues created, x-max-priority on AMQP).
        queue = amqp.queues[handoff.queue]
        declare = [] if handoff.queue in self._declared else [queue]
        ignore_result = not settings.STORE_RESULTS
        task_id = uuid()
        message = amqp.create_task_message(
            task_id,
            DELIVER,
            (handoff.job_id, handoff.database),
            {},
            eta=handoff.eta,  # a timed hand-off: the worker holds the message until the job is due
            time_limit=math.ceil(time_limit or settings.TIME_LIMIT),
            soft_time_limit=soft_time_limit,  # seconds, a float to Celery
            reply_to=app.thread_oid,
            create_sent_event=self._sent_event,
            shadow=handoff.effect,
            ignore_result=ignore_result,
            argsrepr=argsrepr(handoff.job_id, handoff.database),  # given, so Celery does not compute them
            kwargsrepr="{}",
        )
        if not ignore_result:
            app.backend.on_task_call(producer, task_id)
        with tracing.publishing(handoff):
            amqp.send_task_message(
                producer,
                DELIVER,
                message,
                queue=queue,
                declare=declare,
                retry=False,
                headers={correlation.MESSAGE_HEADER: handoff.correlation_id},
                priority=broker_priority(handoff.priority, transport),
            )
        self._declared.add(handoff.queue)

    def _acquire(self) -> Any:
        if self._producer is None:
            from celery import current_app

            _refuse_a_wrong_app(current_app)
            connection = current_app.connection_for_write(transport_options=bounded_transport_options(current_app))
            self._producer = current_app.amqp.Producer(connection)
            self._declared = set()
            self._sent_event = bool(current_app.conf.task_send_sent_event)  # read once: app.conf is slow
        return self._producer

    def release(self, broken: bool = False) -> None:
        """Close the connection; the next publish opens a new one."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            if broken:
                producer.connection.collect()  # drop the sockets without talking to a broken broker
            else:
                producer.connection.release()
        except Exception:  # a broken connection may fail to close; it is dropped either way
            logger.debug("could not close the broker connection", exc_info=True)


def _broker_url() -> str:
    """The broker this process publishes to, without its password (Celery's default when none is set)."""
    from celery import current_app
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(str(current_app.conf.broker_url or celery_app.CELERY_DEFAULT_BROKER)))


#: The app problems this process has logged, each once.
_reported: set[str] = set()


def _refuse_a_wrong_app(app: Any) -> None:
    """Say once, loudly, when the app would publish where no worker reads; raise when that loses the messages."""
    found = celery_app.problem(app)
    if found is None:
        return
    if found.message not in _reported:
        _reported.add(found.message)
        log = logger.error if found.refuse else logger.warning
        log("%s; %s%s", found.message, found.hint, " (jobs stay pending until then)" if found.refuse else "")
    if found.refuse:
        raise celery_app.WrongApp(f"{found.message}; {found.hint}")


def _time_limits(paths: Iterable[str]) -> dict[str, tuple[float | None, float | None]]:
    """The hard and soft time limit of each side effect, its declaration looked up once per ``publish()``.

    A path this process cannot resolve (renamed, removed, or not deployed here
    yet), or whose module raises at import (a setting it lacks, say), is
    published with the default limits: the worker that takes the job records
    why it cannot run it, and the other jobs of the batch are not held up.
    """
    limits: dict[str, tuple[float | None, float | None]] = {}
    for path in paths:
        try:
            effect = registry.resolve(path)
        except LookupError as exc:
            logger.debug("publishing the jobs of %s with the default time limits: %s", path, exc)
            limits[path] = (None, None)
        except Exception as exc:  # its module raised at import; the worker records it as the attempt's error
            logger.warning(
                "publishing the jobs of %s with the default time limits: its module raised at import: %s: %s",
                path, type(exc).__name__, exc,
            )  # fmt: skip
            limits[path] = (None, None)
        else:
            limits[path] = (effect.time_limit, effect.soft_time_limit)
    return limits


#: Transport options bounding every socket operation, per kombu transport.
_TIMEOUT_OPTIONS = {
    "redis": ("socket_timeout", "socket_connect_timeout"),
    "amqp": ("read_timeout", "write_timeout"),
}


def bounded_transport_options(app: Any) -> dict[str, Any]:
    """The app's broker transport options, with ``CRITICAL_PATH_BROKER_TIMEOUT`` where they set no timeout.

    kombu's Redis and AMQP transports wait forever on a hung broker by
    default; the dispatcher and the relay must not. Timeouts the project
    sets itself in ``CELERY_BROKER_TRANSPORT_OPTIONS`` win.
    """
    configured = dict(app.conf.broker_transport_options or {})
    with app.connection_for_write() as probe:  # no I/O: only to learn the transport
        driver = probe.transport.driver_type
    timeout = settings.BROKER_TIMEOUT
    return {**{name: timeout for name in _TIMEOUT_OPTIONS.get(driver, ())}, **configured}
