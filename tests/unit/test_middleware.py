"""The middleware's one sync/async base: the same work around sync and async stacks, answered or not."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import HttpResponse
from django.test import RequestFactory

from critical_path.middleware import CorrelationIdMiddleware, CriticalPathGuardMiddleware, RequestMiddleware


class Recording(RequestMiddleware[str]):
    """Records when ``around`` is entered and left and when ``answered`` runs."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self.steps = []

    @contextmanager
    def around(self, request):
        self.steps.append("enter")
        try:
            yield "state"
        finally:
            self.steps.append("leave")

    def answered(self, request, response, state):
        self.steps.append(f"answered {response.content.decode()} with {state}")
        response["X-Answered"] = "yes"


def in_own_loop(coroutine):
    """Run ``coroutine`` in a thread of its own: browser tests leave an event loop in this one."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def test_both_middleware_declare_sync_and_async_support():
    for middleware in (CorrelationIdMiddleware, CriticalPathGuardMiddleware):
        assert middleware.sync_capable and middleware.async_capable


def test_a_sync_stack_runs_the_view_inside_around_then_answered():
    middleware = Recording(lambda request: HttpResponse("ok"))
    assert not iscoroutinefunction(middleware)

    response = middleware(RequestFactory().get("/"))
    assert middleware.steps == ["enter", "leave", "answered ok with state"]
    assert response["X-Answered"] == "yes"


def test_an_async_stack_is_awaited_without_a_thread():
    async def view(request):
        return HttpResponse("ok")

    middleware = Recording(view)
    assert iscoroutinefunction(middleware)  # Django awaits it instead of adapting it in a thread

    response = in_own_loop(middleware(RequestFactory().get("/")))
    assert middleware.steps == ["enter", "leave", "answered ok with state"]
    assert response["X-Answered"] == "yes"


def test_an_exception_from_the_stack_leaves_around_and_skips_answered():
    def view(request):
        raise LookupError("no answer")

    middleware = Recording(view)
    with pytest.raises(LookupError):
        middleware(RequestFactory().get("/"))
    assert middleware.steps == ["enter", "leave"]
