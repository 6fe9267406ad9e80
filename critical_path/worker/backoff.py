"""Retry delays: exponential, capped, with jitter so a burst of failures does not retry in lockstep."""

from __future__ import annotations

import random
from datetime import timedelta


def delay(attempt: int, base: float, cap: float) -> timedelta:
    """Delay before the attempt after ``attempt`` (1-based): ``base·2^(attempt-1)``, capped, then jittered.

    "Equal jitter": half the delay is kept, the other half drawn at random, so
    retries never come sooner than half the nominal delay.
    """
    nominal = min(cap, base * 2 ** min(attempt - 1, 62))
    return timedelta(seconds=nominal / 2 + random.uniform(0, nominal / 2))
