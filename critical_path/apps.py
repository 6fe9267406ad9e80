import logging
from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CriticalPathConfig(AppConfig):
    name = "critical_path"
    verbose_name = _("Critical path")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import (
            after_setup_logger,
            after_setup_task_logger,
            celeryd_after_setup,
            worker_init,
            worker_process_shutdown,
            worker_ready,
        )

        from critical_path import checks  # noqa: F401  (checks registers the system checks)
        from critical_path.core import registry
        from critical_path.observability import liveness, log
        from critical_path.publishing import dispatcher
        from critical_path.worker import connections, delivery, timers

        dispatcher.inline_runner = delivery.deliver  # CRITICAL_PATH_EAGER runs jobs in the emitting process

        # The deliver task raises from the error its delivery recorded: Celery's tools see a failed task.
        from critical_path import signals, tasks

        for signal in (signals.job_failed, signals.job_dead_lettered):
            signal.connect(tasks.remember_failure, sender=None, weak=False, dispatch_uid="critical_path.tasks")

        # A worker's own log handlers get the job context fields too.
        after_setup_logger.connect(log.install, weak=False, dispatch_uid="critical_path.log")
        after_setup_task_logger.connect(log.install, weak=False, dispatch_uid="critical_path.log.task")
        # A prefork worker's main process serves every pool process's metrics; a finished process is dropped.
        worker_init.connect(_start_worker_exporter, weak=False, dispatch_uid="critical_path.metrics")
        worker_process_shutdown.connect(_forget_pool_process, weak=False, dispatch_uid="critical_path.metrics.pid")
        # A worker keeps CRITICAL_PATH_WORKER_LIVENESS_FILE fresh, for a liveness probe.
        worker_init.connect(liveness.install, weak=False, dispatch_uid="critical_path.liveness")

        # Celery's Django fixup would close the worker's connections around every delivery: deliver keeps them.
        worker_init.connect(connections.keep_connections, weak=False, dispatch_uid="critical_path.connections")
        celeryd_after_setup.connect(
            connections.keep_connections, weak=False, dispatch_uid="critical_path.connections.after_setup"
        )
        worker_init.connect(connections.warn_reconnecting, weak=False, dispatch_uid="critical_path.connections.warn")

        # The prefork pool's cancelled time-limit timers would pile up in the main process until they expire.
        worker_ready.connect(timers.compact_regularly, weak=False, dispatch_uid="critical_path.timers")

        # A job's path may name a Django task, which runs as a side effect.
        try:
            from critical_path.backends.effects import task_side_effect
        except ImportError:  # no tasks framework: stored paths are always @side_effect functions
            pass
        else:
            registry.register_adapter(task_side_effect)


def _start_worker_exporter(**kwargs: Any) -> None:
    from critical_path.conf import settings
    from critical_path.observability import metrics

    port = settings.WORKER_METRICS_PORT
    if port is None:
        return
    try:
        metrics.start_worker_exporter(port)
    except OSError as exc:  # the port is taken, say: name the setting, and let the worker run without it
        logging.getLogger("critical_path.observability.metrics").error(
            "could not serve the worker's metrics on port %s (CRITICAL_PATH_WORKER_METRICS_PORT): %s", port, exc
        )


def _forget_pool_process(pid: int, **kwargs: Any) -> None:
    from critical_path.observability import metrics

    metrics.mark_process_dead(pid)
