"""Job context on log records: correlation id, job id, side effect and attempt.

``JobContextFilter`` (stdlib logging) and ``add_job_context`` (a structlog
processor) read the context variables the worker sets while it runs a job and
the middleware sets while it serves a request; outside both the fields are
``-``, so a format string naming them never fails. Costs two context-variable
reads per record.
"""

from __future__ import annotations

import logging
from typing import Any

from critical_path.core import context, correlation

#: The attributes ``JobContextFilter`` sets on each record (and the keys ``add_job_context`` adds).
FIELDS = ("correlation_id", "job_id", "effect", "attempt")


def job_fields() -> dict[str, Any]:
    """The job context of the running code, ``-`` where there is none."""
    job = context.current_job_or_none()
    if job is None:
        return {"correlation_id": correlation.get() or "-", "job_id": "-", "effect": "-", "attempt": "-"}
    return {"correlation_id": job.correlation_id or "-", "job_id": job.id, "effect": job.effect, "attempt": job.attempt}


class JobContextFilter(logging.Filter):
    """Adds ``correlation_id``, ``job_id``, ``effect`` and ``attempt`` to every record a handler writes.

    Attach it to handlers (``LOGGING["handlers"][...]["filters"]``), not loggers:
    a logger's filters do not see the records of its children or of other
    libraries. Attributes a record already has are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in job_fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def add_job_context(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the same fields as ``JobContextFilter``, where the event has none of its own."""
    for name, value in job_fields().items():
        event_dict.setdefault(name, value)
    return event_dict


def install(logger: logging.Logger | None = None, **kwargs: Any) -> None:
    """Attach ``JobContextFilter`` to each handler of ``logger`` (default: the root logger) that lacks one.

    Connected to Celery's ``after_setup_logger`` and ``after_setup_task_logger``
    signals, so the handlers a Celery worker installs carry the fields too.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, JobContextFilter) for existing in handler.filters):
            handler.addFilter(JobContextFilter())
