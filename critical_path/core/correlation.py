"""Correlation ids: one id per request, stored on the jobs it emits and on every log line of their runs.

``critical_path.middleware.CorrelationIdMiddleware`` takes the request's id from
``CRITICAL_PATH_CORRELATION_HEADER`` (``X-Request-ID`` by default: the id a proxy or an
existing request-id middleware set) or makes one, and holds it in this module's context
variable for the request's duration. ``emit`` reads that variable (no query), so every job
the request emits carries the id; the worker puts it back in the same variable while it
runs the job.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

_current: ContextVar[str | None] = ContextVar("critical_path_correlation_id", default=None)

#: Ids taken from a request header must look like one (they end up in logs and message headers).
_VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,64}")

#: Name of the Celery message header that carries the id to the worker.
MESSAGE_HEADER = "critical_path_correlation_id"


def get() -> str | None:
    """The correlation id of the request or job this code runs for, if any."""
    return _current.get()


def new() -> str:
    return uuid.uuid4().hex


def valid(value: str | None) -> bool:
    return bool(value) and _VALID.fullmatch(value or "") is not None


@contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    """Run a block under ``correlation_id`` (a management command's or a script's, say)."""
    token: Token[str | None] = _current.set(correlation_id)
    try:
        yield
    finally:
        _current.reset(token)
