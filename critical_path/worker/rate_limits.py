"""Rate limits shared by every worker: one token bucket per side effect, one row each, in the job's database.

A side effect declared ``rate="100/m"`` runs at most once every 0.6 s, so at
most 100 times in any minute, across all workers (a bucket of one token,
refilled every ``period / count``, as Celery's per-worker ``rate_limit``). The
bucket is one timestamp, ``full_at``: when its token is back. Taking it is one
conditional UPDATE, ``full_at = max(full_at, now) + interval WHERE full_at <=
now``; a row count of 0 means the token is out, back at ``full_at``. Workers
on any number of hosts share the bucket through the row; none waits on
another beyond that one UPDATE.

Times are the database's (``Now()``); tests pass ``now`` to drive the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from critical_path.outbox.options import Rate

#: ``full_at`` of a bucket never used: full long ago.
_EMPTY = datetime(2000, 1, 1, tzinfo=UTC)


def take(effect: str, rate: Rate, *, using: str, now: datetime | None = None) -> datetime | None:
    """Take a token of ``effect``'s bucket: ``None`` if one was free, else when the next one is due.

    ``now`` replaces the database's clock (tests).
    """
    from django.db import models
    from django.db.models import F, Value
    from django.db.models.functions import Greatest, Now

    from critical_path.models import RateLimit

    clock: Any = Now() if now is None else Value(now, output_field=models.DateTimeField())
    buckets = RateLimit.objects.using(using).filter(effect=effect)
    for _ in range(2):
        taken = buckets.filter(full_at__lte=clock).update(
            full_at=_plus(Greatest(F("full_at"), clock, output_field=models.DateTimeField()), rate.interval)
        )
        if taken:
            return None
        full_at = buckets.values_list("full_at", flat=True).first()
        if full_at is not None:
            return full_at
        # First use of this bucket: create it (another worker may be doing the same), then take again.
        RateLimit.objects.using(using).bulk_create([RateLimit(effect=effect, full_at=_EMPTY)], ignore_conflicts=True)
    raise AssertionError("unreachable: the bucket exists after its creation")  # pragma: no cover


def comeback(next_token: datetime, waiting_since: datetime, rate: Rate, share: float) -> datetime:
    """When a job over the limit is due again: ``share`` (0 to 1, random) into a window after ``next_token``.

    The window is twice what the job has already waited, from one interval up
    to one period: a job just over the limit comes back within an interval or
    two, and one postponed again and again waits twice as long each time, so a
    backlog spreads itself out instead of all coming back together.
    """
    waited = max(next_token - waiting_since, timedelta(0))
    return next_token + min(rate.period, max(rate.interval, 2 * waited)) * share


def _plus(value: Any, delta: timedelta) -> Any:
    from django.db import models
    from django.db.models import ExpressionWrapper, Value

    return ExpressionWrapper(
        value + Value(delta, output_field=models.DurationField()), output_field=models.DateTimeField()
    )
