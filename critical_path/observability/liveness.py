"""A Celery worker's liveness file, for a Kubernetes liveness probe that checks its age.

With ``CRITICAL_PATH_WORKER_LIVENESS_FILE`` set, every worker adds the
``WorkerLiveness`` bootstep to its blueprint (from the ``worker_init`` signal,
sent before the blueprint is built), so the project's Celery app needs no
change. The step touches the file when the worker starts, then every
``CRITICAL_PATH_WORKER_LIVENESS_INTERVAL`` seconds from the worker's own timer,
in its main process; it removes the file when the worker stops. Where the
transport has an event loop (Redis, RabbitMQ), that timer runs in the loop that
consumes messages: a main process that hangs, or that waits to reconnect to its
broker, stops touching the file. Celery's heartbeat events would need ``-E``
and a listener; a file needs neither.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import bootsteps

from critical_path.conf import settings

logger = logging.getLogger(__name__)


def touch(path: Path) -> None:
    """Set the file's modification time to now, creating it (and its directory) if missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        logger.exception("could not touch the liveness file %s", path)


class WorkerLiveness(bootsteps.StartStopStep):
    """Keeps ``CRITICAL_PATH_WORKER_LIVENESS_FILE`` fresh while the worker runs; removes it when it stops."""

    label = "critical_path liveness"
    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.path: Path | None = None
        self.entry: Any = None

    def start(self, worker: Any) -> None:
        configured = settings.WORKER_LIVENESS_FILE
        if not configured:
            return
        self.path = Path(configured)
        touch(self.path)
        self.entry = worker.timer.call_repeatedly(settings.WORKER_LIVENESS_INTERVAL, touch, (self.path,))

    def stop(self, worker: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    def terminate(self, worker: Any) -> None:
        self.stop(worker)


def install(sender: Any, **kwargs: Any) -> None:
    """``worker_init`` receiver: add the step to the worker's blueprint when a liveness file is configured."""
    if settings.WORKER_LIVENESS_FILE:
        sender.app.steps["worker"].add(WorkerLiveness)
