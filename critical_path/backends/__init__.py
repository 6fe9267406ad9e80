"""``CriticalPathBackend``: a backend of Django's tasks framework that runs tasks through the outbox and Celery.

``task.enqueue()`` writes a job in the caller's transaction through the same
emit as ``after_commit()``, and the job is handed to Celery when the
transaction commits; workers run it through ``critical_path.deliver`` with
the outbox's retries, dead letters and replays. ``get_result()`` reads the job
back as a ``TaskResult`` (``critical_path.backends.results``). Configured in
``TASKS``; its ``OPTIONS`` are ``DATABASE`` (where jobs are written, by default
the router's database for ``Job``) and ``MAX_ATTEMPTS`` (by default
``CRITICAL_PATH_MAX_ATTEMPTS``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.core.checks import CheckMessage, Error
from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from critical_path.backends import effects, results
from critical_path.backends.compat import (
    DEFAULT_TASK_QUEUE_NAME,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    task_enqueued,
)
from critical_path.outbox import batch as batching
from critical_path.outbox import effects as side_effects

__all__ = ["CriticalPathBackend"]

#: The ``OPTIONS`` the backend reads.
OPTIONS = ("DATABASE", "MAX_ATTEMPTS")

#: The largest job id (a ``BigAutoField``).
_MAX_ID = 2**63 - 1

#: Tasks each backend alias validated (declared, or given new options by ``using()``), by path: the check
#: ``critical_path.E009`` imports each the way a worker will.
_declared: dict[str, dict[str, Task[Any, Any]]] = {}


class CriticalPathBackend(BaseTaskBackend):
    """Tasks as outbox jobs: enqueued atomically with the caller's transaction, run by Celery workers."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        _declared.setdefault(self.alias, {})[task.module_path] = task

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any, Any]:
        """Write the task's job in the current transaction; it is handed off when the transaction commits.

        Raises ``InvalidArguments`` or ``ArgumentNotSerializable`` for
        arguments that do not fit the function or would not come back from
        JSON unchanged, as ``after_commit()`` does.
        """
        self.validate_task(task)
        database = self.database()
        if batching.buffer_for(database, connections[database]) is not None:
            raise InvalidTask(
                f"{task.module_path}.enqueue() was called inside critical_path.batch(), which writes its jobs when "
                "the block exits; a task's result needs its job's id at once. Enqueue the task outside the batch "
                "block (it is still written in the caller's transaction)."
            )
        effect = effects.side_effect_for(task, max_attempts=self.options.get("MAX_ATTEMPTS"))
        effect = effect.using(database=database, queue=self.queue(task.queue_name), delay=self.delay(task.run_after))
        job = effect.after_commit(*args, **kwargs)
        result = results.result_of(job, task, self.alias)
        transaction.on_commit(partial(task_enqueued.send, type(self), task_result=result), using=database, robust=True)
        return result

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        """The result of the task whose job has id ``result_id`` on the backend's database."""
        from critical_path.models import Job

        database = self.database()
        valid = isinstance(result_id, str) and result_id.isascii() and result_id.isdigit()
        job = Job.objects.using(database).filter(pk=int(result_id)).first() if valid and _fits(result_id) else None
        if job is None:
            raise TaskResultDoesNotExist(
                f"No task result {result_id!r} on database {database!r}: a result id is the id of a job there, "
                "as returned by enqueue() (TaskResult.id)."
            )
        try:
            effect = side_effects.resolve(job.effect)
        except LookupError as exc:
            raise TaskResultDoesNotExist(f"Job #{job.pk}'s task cannot be imported: {exc}") from exc
        if not isinstance(effect, effects.TaskSideEffect):
            raise TaskResultDoesNotExist(
                f"Job #{job.pk} runs the side effect {job.effect}, not a task: it has no task result."
            )
        return results.result_of(job, effect.task, self.alias)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        """Nothing: ``critical_path.checks`` runs this backend's checks (``check_backend``).

        The framework's own check, which calls this method, is registered only
        once ``django.tasks`` (or the ``django_tasks`` app) is loaded; critical_path's
        is registered always, and running both would report everything twice.
        """
        return []

    def database(self) -> str:
        """The database the backend writes and reads jobs on."""
        from critical_path.models import Job

        database: str = self.options.get("DATABASE") or router.db_for_write(Job)
        return database

    def queue(self, queue_name: str) -> str | None:
        """The Celery queue of a task's queue: ``"default"`` is the outbox's default queue, any other its own name."""
        return None if queue_name == DEFAULT_TASK_QUEUE_NAME else queue_name

    def delay(self, run_after: datetime | None) -> timedelta | None:
        """How long the job waits before it is due: until ``run_after``, by this host's clock (none if past)."""
        if run_after is None:
            return None
        return max(run_after - timezone.now(), timedelta(0))


def check_backend(alias: str, params: dict[str, Any]) -> list[CheckMessage]:
    """E008, E009: the backend ``alias``'s ``OPTIONS``, and the tasks declared for it, as a worker will import them."""
    errors: list[CheckMessage] = []
    options = params.get("OPTIONS") or {}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        errors.append(_option_error(alias, f"names unknown options {unknown}", f"Use only {list(OPTIONS)}."))
    database = options.get("DATABASE")
    if database is not None and database not in connections.settings:
        errors.append(
            _option_error(
                alias,
                f"sets DATABASE to {database!r}, which is not in settings.DATABASES",
                f"Set it to one of {sorted(connections.settings)}, or remove it to use the router's database.",
            )
        )
    attempts = options.get("MAX_ATTEMPTS")
    if attempts is not None and (type(attempts) is not int or attempts < 1):
        errors.append(
            _option_error(
                alias,
                f"sets MAX_ATTEMPTS to {attempts!r}",
                "Set it to a positive int, or remove it to use CRITICAL_PATH_MAX_ATTEMPTS.",
            )
        )
    for path, task in sorted(_declared.get(alias, {}).items()):
        try:
            found = import_string(path)
        except ImportError:
            found = None
        if not (isinstance(found, Task) and found.func is task.func):
            errors.append(
                Error(
                    f"The task {path} cannot be imported by its path: a worker imports {path!r} to run its jobs, "
                    f"and finds {type(found).__name__ if found is not None else 'nothing'} there.",
                    hint="Declare tasks with @task on a module-level function and keep the decorated name the "
                    "function's own (not `name = task(other_function)`).",
                    obj=path,
                    id="critical_path.E009",
                )
            )
    return errors


def _option_error(alias: str, problem: str, hint: str) -> Error:
    return Error(f"TASKS[{alias!r}]['OPTIONS'] {problem}.", hint=hint, id="critical_path.E008")


def _fits(digits: str) -> bool:
    return len(digits) <= 19 and int(digits) <= _MAX_ID
