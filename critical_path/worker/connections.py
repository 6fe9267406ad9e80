"""A worker keeps its database connections from one delivery to the next.

Celery's Django fixup closes every connection of a worker before and after each
task unless ``CELERY_DB_REUSE_MAX`` is set, so each job would connect anew: on
PostgreSQL the connect costs more than the job's own statements, and a worker
with Celery's defaults drains at a fraction of its speed. ``critical_path.deliver``
already treats its connections as Django does around a request
(``close_if_unusable_or_obsolete``: ``CONN_MAX_AGE``, ``CONN_HEALTH_CHECKS``, a
broken connection replaced), so the fixup's closes are skipped for that task
alone. Every other task keeps Celery's behaviour, whatever the settings say.

A database whose ``CONN_MAX_AGE`` is 0 (Django's default) and that has no pool
still gets a new connection per job, as a request would; ``warn_reconnecting``
says so once when the worker starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.signals import task_postrun, task_prerun

logger = logging.getLogger(__name__)

#: The task whose connections critical_path manages itself.
DELIVER_TASK = "critical_path.deliver"
#: The fixup's receivers that close connections around each task.
_FIXUP_RECEIVERS = ((task_prerun, "on_task_prerun"), (task_postrun, "on_task_postrun"))


def keep_connections(sender: Any = None, **kwargs: Any) -> None:
    """Make Celery's Django fixup skip ``critical_path.deliver``; other tasks are untouched.

    Connected to ``worker_init`` and ``celeryd_after_setup``: whichever runs after
    the fixup installed its receivers rewires them, the other finds nothing left to do.
    Both are sent in the worker's main process before its pool forks.
    """
    app = getattr(sender, "app", None) or getattr(kwargs.get("instance"), "app", None)
    if app is None:
        from celery import current_app

        app = current_app
    for fixup in getattr(app, "_fixups", ()):  # Celery keeps its fixups here; a Django project has one
        worker_fixup = getattr(fixup, "_worker_fixup", None)
        if worker_fixup is None:
            continue
        for signal, name in _FIXUP_RECEIVERS:
            receiver = getattr(worker_fixup, name, None)
            if receiver is not None and signal.disconnect(receiver):
                signal.connect(
                    _except_deliveries(receiver), weak=False, dispatch_uid=f"critical_path.{name}.{id(worker_fixup)}"
                )


def _except_deliveries(receiver: Callable[..., Any]) -> Callable[..., Any]:
    def skip_deliveries(sender: Any = None, **kwargs: Any) -> Any:
        if getattr(sender, "name", None) == DELIVER_TASK:
            return None  # deliver closes what is broken or past CONN_MAX_AGE itself
        return receiver(sender=sender, **kwargs)

    return skip_deliveries


def warn_reconnecting(**kwargs: Any) -> None:
    """Say once, at the worker's start, which job databases it will reconnect to for every job."""
    from django.db import connections

    from critical_path.models import job_databases

    for alias in job_databases():
        settings = connections.settings[alias]
        if settings.get("CONN_MAX_AGE", 0) == 0 and not settings.get("OPTIONS", {}).get("pool"):
            logger.warning(
                "database %r has CONN_MAX_AGE = 0, so the worker connects to it anew for every job; "
                "set CONN_MAX_AGE (e.g. 600) and CONN_HEALTH_CHECKS = True in DATABASES[%r] to keep the connection",
                alias,
                alias,
            )
