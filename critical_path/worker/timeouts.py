"""Time limits of one attempt: the lease they imply, and a soft limit's exception made readable.

Celery enforces both limits in the worker (prefork and gevent pools): at the
soft limit it raises ``SoftTimeLimitExceeded`` inside the function, at the hard
limit it kills the pool process. The lease covers the hard limit plus
``CRITICAL_PATH_LEASE_GRACE``, so the relay never rescues a job whose worker may
still be running it.
"""

from __future__ import annotations

from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded

from critical_path.conf import settings
from critical_path.exceptions import AttemptTimedOut


def lease(hard_limit: float | None) -> timedelta:
    """How long a claim holds the job: the attempt's hard time limit (its message's) plus the grace."""
    return timedelta(seconds=(hard_limit or settings.TIME_LIMIT) + settings.LEASE_GRACE)


def explain(exc: Exception, soft_limit: float | None, attempt: int) -> Exception:
    """``exc``, or for Celery's bare ``SoftTimeLimitExceeded`` an ``AttemptTimedOut`` that says what to do.

    The new exception is raised from the original, so the recorded traceback
    still shows where the function was when the limit stopped it.
    """
    if not isinstance(exc, SoftTimeLimitExceeded):
        return exc
    limit = f"of {soft_limit:g} s " if soft_limit else ""
    try:
        raise AttemptTimedOut(
            f"attempt {attempt} ran past its soft time limit {limit}and was stopped. If the work needs longer, "
            "raise soft_time_limit= (and time_limit=) on @side_effect(...); if it waits on a call out, give that "
            "call a timeout shorter than the limit."
        ) from exc
    except AttemptTimedOut as timed_out:
        return timed_out
