"""Waiting on real processes: poll against a deadline, never a bare sleep."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

#: The repository's root, wherever a test module sits below tests/.
ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def at_once(*calls: Callable[[], T], timeout: float = 60.0) -> list[T | Exception]:
    """Run ``calls`` in threads released together; each outcome (result or exception), in call order.

    Each thread closes its own database connections, so concurrent tests do not
    leak them into the next test.
    """
    import threading

    from django.db import connections

    outcomes: list[T | Exception] = [TimeoutError("still running")] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            start.wait(timeout)
            outcomes[index] = call()
        except Exception as exc:  # returned to the test, which decides
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return outcomes


def next_message(queue: str, timeout: float = 10.0):
    """The next message on ``queue`` of the current Celery app's broker (acked), and the broker's driver."""
    from celery import current_app

    with current_app.connection_for_read() as connection:
        messages = connection.SimpleQueue(queue)
        try:
            message = messages.get(timeout=timeout)
            message.ack()
        finally:
            messages.close()
        return message, connection.transport.driver_type
