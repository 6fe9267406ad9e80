"""critical_path: keep the request's critical path to what the response needs.

Side effects are rows written in the caller's transaction (a transactional
outbox), handed to Celery after commit without blocking the request, swept up
by a relay when the hand-off is lost, and retried, dead-lettered and replayed.
"""

from importlib.metadata import PackageNotFoundError, version

from critical_path.core.context import JobContext, current_job
from critical_path.exceptions import (
    ArgumentNotSerializable,
    AttemptTimedOut,
    CriticalPathError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidOption,
    InvalidSideEffect,
    NoCurrentJob,
    PayloadNotUpgradable,
    PayloadTooNew,
    PermanentFailure,
    ResultNotStorable,
)
from critical_path.outbox.batch import batch
from critical_path.outbox.effects import SideEffect, side_effect

try:
    __version__ = version("django-critical-path")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ArgumentNotSerializable",
    "AttemptTimedOut",
    "CriticalPathError",
    "IdempotencyConflict",
    "InvalidArguments",
    "InvalidOption",
    "InvalidSideEffect",
    "JobContext",
    "NoCurrentJob",
    "PayloadNotUpgradable",
    "PayloadTooNew",
    "PermanentFailure",
    "ResultNotStorable",
    "SideEffect",
    "__version__",
    "batch",
    "current_job",
    "side_effect",
]
