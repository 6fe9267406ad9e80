"""OpenTelemetry tracing, when opentelemetry-api is installed (``django-critical-path[opentelemetry]``).

A job keeps the W3C trace context that was current when it was emitted (its
``trace_context`` column: ``traceparent``, then ``tracestate`` after a space),
so the spans of its publishing, by the dispatcher or the relay, and of every
run of it, retries, rescues and replays included, join the trace of the
request that emitted it, however late they happen and whichever process runs
them. Spans follow OpenTelemetry's messaging conventions: ``publish <queue>``
(PRODUCER), then ``process <queue>`` (CONSUMER) over one attempt, with its
``claim`` and ``run <side effect>`` as children.

A job emitted outside any span stores ``''`` and makes no spans. Without
opentelemetry-api each hook costs one global read; with it, an emit outside
a span costs one context-variable read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from critical_path.models import Job

#: Longest stored trace context (the column's length); ``tracestate`` members are dropped from its end to fit.
MAX_LENGTH = 255

#: ``messaging.system`` of every span: the messages are Celery's.
SYSTEM = "celery"

_trace: Any = None  # opentelemetry.trace once imported; False if opentelemetry-api is not installed
_tracer: Any = None
_NULL = contextlib.nullcontext()


class Handoff(Protocol):
    """What the publishing span reads of a hand-off (``critical_path.publishing.handoff.Handoff``)."""

    @property
    def database(self) -> str: ...
    @property
    def job_id(self) -> int: ...
    @property
    def effect(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def trace_context(self) -> str: ...


def _api() -> Any:
    global _trace
    if _trace is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _trace = False
        else:
            _trace = trace
    return _trace


def current() -> str:
    """The trace context of the span current here, to store with a job; ``''`` outside a span."""
    trace = _trace if _trace is not None else _api()
    if trace is False:
        return ""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return ""
    parent = f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"
    if not span_context.trace_state:
        return parent
    members = span_context.trace_state.to_header().split(",")
    while members and len(parent) + 1 + len(",".join(members)) > MAX_LENGTH:
        members.pop()  # W3C Trace Context: truncate by dropping members from the end
    return f"{parent} {','.join(members)}" if members else parent


def publishing(handoff: Handoff) -> AbstractContextManager[Any]:
    """A PRODUCER span around publishing ``handoff``'s message, in the trace its job was emitted in."""
    if not handoff.trace_context or not _api():
        return _NULL
    attributes = _attributes("send", "publish", handoff.queue, handoff.correlation_id)
    attributes.update(_job_attributes(handoff.job_id, handoff.effect, handoff.database))
    span = _get_tracer().start_span(
        f"publish {handoff.queue}",
        context=_extract(handoff.trace_context),
        kind=_trace.SpanKind.PRODUCER,
        attributes=attributes,
    )
    return _trace.use_span(span, end_on_exit=True)  # type: ignore[no-any-return]


def processing(job: Job, attempt: int, claimed_at: int) -> AbstractContextManager[Any]:
    """A CONSUMER span over attempt ``attempt`` of ``job``, begun at its claim (``claimed_at``, in ns).

    The claim's own span (the UPDATE and reading the row back) is recorded
    after the fact: until the row is read, the job's trace is unknown.
    """
    if not job.trace_context or not _api():
        return _NULL
    attributes = _attributes("process", "process", job.queue, job.correlation_id)
    attributes.update(_job_attributes(job.pk, job.effect, job.database, attempt))
    tracer = _get_tracer()
    span = tracer.start_span(
        f"process {job.queue}",
        context=_extract(job.trace_context),
        kind=_trace.SpanKind.CONSUMER,
        attributes=attributes,
        start_time=claimed_at,
    )
    claim_attributes = _job_attributes(job.pk, job.effect, job.database, attempt)
    tracer.start_span(
        "claim", context=_trace.set_span_in_context(span), attributes=claim_attributes, start_time=claimed_at
    ).end()
    return _trace.use_span(span, end_on_exit=True)  # type: ignore[no-any-return]


def running(job: Job, attempt: int) -> AbstractContextManager[Any]:
    """A span over the side effect's function: the parent of the spans it makes itself.

    An exception it raises is recorded on this span, and both this span and
    the attempt's are marked as errors.
    """
    if not job.trace_context or not _api():
        return _NULL
    return _run(job, attempt)


@contextlib.contextmanager
def _run(job: Job, attempt: int) -> Iterator[None]:
    attempt_span = _trace.get_current_span()
    attributes = _job_attributes(job.pk, job.effect, job.database, attempt)
    with _get_tracer().start_as_current_span(f"run {job.effect}", attributes=attributes):
        try:
            yield
        except BaseException as exc:
            from opentelemetry.trace import Status, StatusCode

            attempt_span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


def _attributes(operation_type: str, operation: str, queue: str, correlation_id: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    return attributes


def _job_attributes(job_id: int, effect: str, database: str, attempt: int | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "critical_path.job.id": job_id,
        "critical_path.side_effect": effect,
        "critical_path.database": database,
    }
    if attempt is not None:
        attributes["critical_path.job.attempt"] = attempt
    return attributes


def _extract(stored: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    traceparent, _, tracestate = stored.partition(" ")
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return TraceContextTextMapPropagator().extract(carrier)


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            package_version = version("django-critical-path")
        except PackageNotFoundError:  # a source tree that is not installed, as critical_path.__version__ says
            package_version = "0+unknown"
        # Before a tracer provider is set this is a proxy, which uses the provider once one is.
        _tracer = _trace.get_tracer("critical_path", package_version)
    return _tracer
