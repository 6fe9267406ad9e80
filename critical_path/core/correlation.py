"""Correlation ids: one id per request, stored on the jobs it emits and on every log line of their runs.

``CorrelationIdMiddleware`` takes the request's id from ``CRITICAL_PATH_CORRELATION_HEADER``
(``X-Request-ID`` by default: the id a proxy or an existing request-id middleware set) or
makes one, and holds it in a context variable for the request's duration. ``emit`` reads
that variable (no query), so every job the request emits carries the id; the worker puts
it back in the same variable while it runs the job.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from critical_path.conf import settings

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


class CorrelationIdMiddleware:
    """Gives each request a correlation id: the client's or proxy's header if valid, else a new one.

    The id is echoed in the response under the same header, so a client can
    quote it. Put it near the top of ``MIDDLEWARE`` so later middleware logs
    with it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        header, correlation_id = self._read(request)
        with correlated(correlation_id):
            response: HttpResponseBase = self.get_response(request)
        response.headers.setdefault(header, correlation_id)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        header, correlation_id = self._read(request)
        with correlated(correlation_id):
            response: HttpResponseBase = await self.get_response(request)
        response.headers.setdefault(header, correlation_id)
        return response

    @staticmethod
    def _read(request: HttpRequest) -> tuple[str, str]:
        header = settings.CORRELATION_HEADER
        given = request.headers.get(header)
        correlation_id = given if given is not None and valid(given) else new()
        request.correlation_id = correlation_id  # type: ignore[attr-defined]
        return header, correlation_id
