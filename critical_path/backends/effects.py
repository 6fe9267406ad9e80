"""Django tasks as side effects: how a task's job is emitted, run and recorded.

``CriticalPathBackend.enqueue`` emits a task through ``TaskSideEffect``, and a
worker's ``deliver`` runs it through the same class (``task_side_effect``, the
registry's adapter, turns the ``Task`` at the job's path into one), so a task gets the outbox's whole
contract: written in the caller's transaction, handed off on commit, claimed,
retried, dead-lettered, replayed. What a task adds is its result: the worker
of each attempt and the return value, stored as JSON.
"""

from __future__ import annotations

import math
import os
import socket
from typing import TYPE_CHECKING, Any

from critical_path.backends import results
from critical_path.backends.compat import TASK_MAX_PRIORITY, Task, TaskContext, normalize_json
from critical_path.core import arguments
from critical_path.exceptions import ArgumentNotSerializable, ResultNotStorable
from critical_path.outbox.effects import SideEffect
from critical_path.outbox.options import MAX_PRIORITY

if TYPE_CHECKING:
    from critical_path.models import Job

__all__ = ["Task", "TaskSideEffect", "priority", "side_effect_for", "task_side_effect", "worker_id"]


class TaskSideEffect(SideEffect[Any, Any]):
    """The side effect that runs a Django ``Task``: its function, with the task's context if it takes one."""

    front_door = "enqueue"

    def __init__(self, task: Task[Any, Any], *, max_attempts: int | None = None) -> None:
        super().__init__(task.func, max_attempts=max_attempts, priority=priority(task.priority))
        self.task = task
        if task.takes_context:  # callers pass the arguments after the context, which the worker supplies
            parameters = list(self.signature.parameters.values())[1:]
            self.signature = self.signature.replace(parameters=parameters)

    def __repr__(self) -> str:
        return f"<TaskSideEffect {self.path}>"

    def run(self, job: Job, attempt: int, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Record this worker on the job, call the task (async ones through ``async_to_sync``), return its JSON."""
        from critical_path.models import Job

        job.worker_id = worker_id()
        Job.objects.using(job.database).filter(pk=job.pk).run_by(job.claims, job.worker_id)
        if self.task.takes_context:
            context: TaskContext[Any, Any] = TaskContext(
                task_result=results.result_of(job, self.task, self.task.backend)
            )
            returned = self.task.call(context, *args, **kwargs)
        else:
            returned = self.task.call(*args, **kwargs)
        return stored(returned, self.path)


def side_effect_for(task: Task[Any, Any], *, max_attempts: int | None = None) -> TaskSideEffect:
    """The side effect that emits and runs ``task``."""
    return TaskSideEffect(task, max_attempts=max_attempts)


def task_side_effect(value: Any) -> TaskSideEffect | None:
    """The side effect that runs ``value`` if it is a Django task, else ``None``.

    ``apps.ready()`` registers it with ``critical_path.core.registry.register_adapter``,
    so a job's path may name a task.
    """
    return side_effect_for(value) if isinstance(value, Task) else None


def priority(task_priority: int) -> int:
    """A task's priority (-100 to 100, default 0) on critical_path's scale (0 to 9, default 0; higher runs first).

    0 and below map to 0, the scale's default and lowest, so a task of default
    priority competes evenly with side effects of default priority; 1 to 100
    map evenly onto 1 to 9 (1-11 → 1, …, 89-100 → 9).
    """
    if task_priority <= 0:
        return 0
    return min(MAX_PRIORITY, math.ceil(task_priority * MAX_PRIORITY / TASK_MAX_PRIORITY))


def stored(value: Any, path: str) -> Any:
    """``value`` as the job stores it: the framework's JSON normalisation, refused if JSON would change it further.

    A value that cannot be stored is a permanent failure: running the task
    again would run its work again and return the same kind of value.
    """
    try:
        normalized = normalize_json(value)
        arguments.check(normalized, "the return value")
    except (TypeError, ValueError, ArgumentNotSerializable) as exc:
        raise ResultNotStorable(
            f"{path} returned {type(value).__module__}.{type(value).__qualname__}, which its result cannot store "
            f"as JSON ({exc}). Return None, bool, int, finite float, str, list or dict (with str keys); store "
            "anything else yourself and return its id."
        ) from None
    return normalized


def worker_id() -> str:
    """This process, as a task result lists it: the Celery worker's node name (or the host) and the process id."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    hostname = getattr(request, "hostname", None) or socket.gethostname()
    return f"{hostname}:{os.getpid()}"
