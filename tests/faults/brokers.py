"""Broker options for fault injection, and pointing this process's Celery app at a test's own broker.

Timeouts are short so that a hung broker costs the dispatcher and the relay
seconds, not minutes; AMQP publishes with publisher confirms, so a message
counts as published only once the broker has taken it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

#: Seconds a connect, read or write may take before the broker counts as down.
TIMEOUT = 2


def transport_options(url: str) -> dict[str, Any]:
    if url.startswith(("amqp://", "pyamqp://")):
        return {"confirm_publish": True, "read_timeout": TIMEOUT, "write_timeout": TIMEOUT}
    return {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}


@contextmanager
def celery_on(url: str) -> Iterator[Celery]:
    """Make a Celery app on ``url`` this process's current and default app, so its dispatcher and relay use it.

    Celery prefers ``CELERY_BROKER_URL`` from the environment to its configuration,
    so the variable is set too, and restored on exit with the previous app.
    """
    from celery import current_app

    previous_app, previous_url = current_app._get_current_object(), os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url
    app = Celery("faults", set_as_current=False)
    app.conf.update(
        broker_url=url,
        broker_connection_timeout=TIMEOUT,
        broker_transport_options=transport_options(url),
        accept_content=["json"],
        task_serializer="json",
    )
    app.set_current()
    app.set_default()
    try:
        yield app
    finally:
        if previous_url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous_url
        previous_app.set_current()
        previous_app.set_default()
        app.close()
