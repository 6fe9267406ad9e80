"""critical_path's middleware: correlation ids, and the critical-path guard.

Both serve sync and async stacks alike (``sync_and_async_middleware``). Django
builds each middleware with the next one's ``get_response``; when that is a
coroutine function, the instance marks itself as one (``markcoroutinefunction``),
so an async stack awaits it without a thread. ``RequestMiddleware`` holds that
once: a subclass says what the rest of the stack runs inside (``around``) and
what it does with the answer (``answered``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from critical_path import guard
from critical_path.conf import settings
from critical_path.core import correlation

State = TypeVar("State")


@sync_and_async_middleware
class RequestMiddleware(Generic[State]):
    """One request's work around the rest of the stack, on sync and async stacks alike.

    ``around(request)`` is entered before the rest of the stack runs and left
    once it has answered; what it yields is handed to ``answered(request,
    response, state)``, which may change the response or raise. An exception
    from the rest of the stack leaves ``around`` and skips ``answered``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        with self.around(request) as state:
            response: HttpResponseBase = self.get_response(request)
        self.answered(request, response, state)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        with self.around(request) as state:
            response: HttpResponseBase = await self.get_response(request)
        self.answered(request, response, state)
        return response

    def around(self, request: HttpRequest) -> AbstractContextManager[State]:
        raise NotImplementedError

    def answered(self, request: HttpRequest, response: HttpResponseBase, state: State) -> None:
        """Once the rest of the stack has answered, outside ``around``: nothing by default."""


class CorrelationIdMiddleware(RequestMiddleware[tuple[str, str]]):
    """Gives each request a correlation id: the client's or proxy's header if valid, else a new one.

    The id is held for the request's duration (``critical_path.core.correlation``),
    so every job the request emits carries it, and it is echoed in the
    response under the same header, so a client can quote it. Put it near the
    top of ``MIDDLEWARE`` so later middleware logs with it.
    """

    @contextmanager
    def around(self, request: HttpRequest) -> Iterator[tuple[str, str]]:
        header = settings.CORRELATION_HEADER
        given = request.headers.get(header)
        correlation_id = given if given is not None and correlation.valid(given) else correlation.new()
        request.correlation_id = correlation_id  # type: ignore[attr-defined]
        with correlation.correlated(correlation_id):
            yield header, correlation_id

    def answered(self, request: HttpRequest, response: HttpResponseBase, state: tuple[str, str]) -> None:
        header, correlation_id = state
        response.headers.setdefault(header, correlation_id)


class CriticalPathGuardMiddleware(RequestMiddleware[tuple[str, guard.Findings] | None]):
    """Reports the side effects each request does inline, per ``CRITICAL_PATH_GUARD``.

    ``"warn"`` logs a warning per finding (logger ``critical_path.guard``);
    ``"raise"`` raises ``InlineSideEffect`` listing them once the view has
    answered; ``None`` (the default) does nothing. Place it first in
    ``MIDDLEWARE`` to cover the other middleware too.
    """

    @contextmanager
    def around(self, request: HttpRequest) -> Iterator[tuple[str, guard.Findings] | None]:
        mode = settings.GUARD
        if mode is None:
            yield None
            return
        with guard.watch() as findings:
            yield mode, findings

    def answered(
        self, request: HttpRequest, response: HttpResponseBase, state: tuple[str, guard.Findings] | None
    ) -> None:
        if state is not None:
            mode, findings = state
            guard.report_request(request, findings, mode)
