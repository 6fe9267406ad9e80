"""A Django task's ``TaskResult``, read from its job row.

The result's id is the job's id, as a string, on the backend's database. Job
statuses map onto the framework's four:

=====================  ==============  =========================================
job status             result status   why
=====================  ==============  =========================================
pending, enqueued      ``READY``       waiting for a worker
failed                 ``READY``       waiting for its retry; ``errors`` lists why
running                ``RUNNING``
succeeded              ``SUCCESSFUL``  ``return_value`` is what the task returned
coalesced              ``SUCCESSFUL``  (tasks do not coalesce; no return value)
dead                   ``FAILED``      attempts exhausted, or a permanent failure
discarded              ``FAILED``      someone discarded it; it may never have run
=====================  ==============  =========================================
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from critical_path.backends.compat import Task, TaskError, TaskResult, TaskResultStatus

if TYPE_CHECKING:
    from critical_path.models import Job

#: Each job status's result status (the table above).
STATUSES = {
    "pending": TaskResultStatus.READY,
    "enqueued": TaskResultStatus.READY,
    "failed": TaskResultStatus.READY,
    "running": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "coalesced": TaskResultStatus.SUCCESSFUL,
    "dead": TaskResultStatus.FAILED,
    "discarded": TaskResultStatus.FAILED,
}

#: The exception class of an error recorded without one (by a version that did not record it).
UNKNOWN_EXCEPTION = "builtins.Exception"


def result_of(job: Job, task: Task[Any, Any], backend: str) -> TaskResult[Any, Any]:
    """``job``'s result, for ``task`` (the one at the job's path) run by the tasks backend ``backend``.

    ``errors`` and ``worker_ids`` come from the job's error history, oldest
    first (bounded by ``CRITICAL_PATH_ERROR_HISTORY_LIMIT``), and the worker
    running or that ran the successful attempt. ``enqueued_at`` is when
    ``enqueue()`` wrote the job, ``started_at`` the first recorded attempt's
    start, ``last_attempted_at`` the latest's.
    """
    history = list(reversed(job.error_history))
    status = STATUSES[job.status]
    worker_ids = [entry["worker_id"] for entry in history if entry.get("worker_id")]
    if job.worker_id and job.status in ("running", "succeeded"):
        worker_ids.append(job.worker_id)
    first_start = next((entry["started_at"] for entry in history if entry.get("started_at")), None)
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=str(job.pk),
        status=status,
        enqueued_at=job.created_at,
        started_at=datetime.fromisoformat(first_start) if first_start else job.started_at,
        finished_at=job.finished_at if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED) else None,
        last_attempted_at=job.started_at,
        args=list(job.args),
        kwargs=dict(job.kwargs),
        backend=backend,
        errors=[
            TaskError(exception_class_path=entry.get("exception") or UNKNOWN_EXCEPTION, traceback=entry["traceback"])
            for entry in history
        ],
        worker_ids=worker_ids,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.return_value)  # the framework's backends set it so too
    return result
