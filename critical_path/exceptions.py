"""Exceptions raised by critical_path; every one derives from CriticalPathError.

The guard's ``InlineSideEffect`` is in ``critical_path.guard``, beside the findings it carries.
"""

from __future__ import annotations


class CriticalPathError(Exception):
    """Base class of every error critical_path raises."""


class PermanentFailure(CriticalPathError):
    """Raise from a side effect to dead-letter the job now, skipping remaining retries."""


class AttemptTimedOut(CriticalPathError):
    """An attempt ran past its side effect's soft time limit: recorded as a failed attempt, and retried."""


class PayloadTooNew(CriticalPathError):
    """A job's payload was emitted by a newer version of its side effect than this worker runs: retried."""


class PayloadNotUpgradable(PermanentFailure):
    """A job's older payload cannot be upgraded to its side effect's version: dead-lettered."""


class ResultNotStorable(PermanentFailure):
    """A Django task returned a value its result cannot store as JSON: dead-lettered, not run again."""


class InvalidSideEffect(CriticalPathError, TypeError):
    """The decorated callable cannot be a side effect (not a module-level function)."""


class InvalidArguments(CriticalPathError, TypeError):
    """The arguments given to ``after_commit`` do not match the function's signature."""


class ArgumentNotSerializable(CriticalPathError, ValueError):
    """An argument would not come back unchanged from JSON, so the job could not run as emitted."""


class InvalidOption(CriticalPathError, ValueError):
    """An option of ``@side_effect(...)`` or ``.using(...)`` is out of range or of the wrong type."""


class NotACeleryTask(CriticalPathError, AttributeError):
    """A Celery task's method (``delay``, ``apply_async``…) was called on a side effect, which is no task."""


class IdempotencyConflict(CriticalPathError):
    """A job with this idempotency key exists with a different side effect or arguments."""


class NoCurrentJob(CriticalPathError, LookupError):
    """``current_job()`` was called outside a running side effect."""


class DeliveryFailed(CriticalPathError):
    """Raised by the Celery task ``critical_path.deliver`` once a failed attempt is recorded, from the error.

    Celery then marks the task FAILURE, sends ``task_failure`` and the ``task-failed`` event (Flower), and
    acknowledges the message: the retry, if any, is critical_path's own (it never asks Celery to retry).
    """


class AttemptFailed(DeliveryFailed):
    """The attempt failed and the job will be retried: an error the task expects (Celery's ``Task.throws``)."""


class DeadLettered(DeliveryFailed):
    """The attempt failed and the job is dead-lettered: no attempt is left, or it raised ``PermanentFailure``."""


class RelayBusy(CriticalPathError):
    """Another relay holds a database that runs one relay at a time (SQLite)."""
