"""Three side effects of a signup, as the benchmark emits them (no worker runs them here)."""

import time
from typing import Any

from celery import shared_task

from critical_path import side_effect


@side_effect
def send_welcome_email(signup_id: int) -> None: ...


@side_effect
def sync_crm(signup_id: int) -> None: ...


@side_effect
def recompute_stats() -> None: ...


@shared_task(name="benchmarks.side_effect", ignore_result=True)
def celery_side_effect(name: str, signup_id: int | None = None) -> None: ...


# Delivery: one business row written per run, plain, atomic, or from an older payload version.


@side_effect
def record_signup(email: str) -> None:
    from benchmarks.benchapp.models import Signup

    Signup.objects.create(email=email)


@side_effect(time_limit=30, soft_time_limit=20)
def record_signup_with_soft_limit(email: str) -> None:
    record_signup(email)


@side_effect(atomic=True)
def record_signup_atomically(email: str) -> None:
    record_signup(email)


@side_effect(version=3)
def record_signup_v3(email: str, *, source: str) -> None:
    record_signup(email)


@record_signup_v3.upgrade(from_version=1)
def _(args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    return [args[0].lower()], kwargs


@record_signup_v3.upgrade(from_version=2)
def _(args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    return args, {**kwargs, "source": "web"}


@side_effect(coalesce=True)
def record_signup_coalescing(email: str) -> None:
    record_signup(email)


@side_effect(rate="1000/s")
def record_signup_rate_limited(email: str) -> None:
    record_signup(email)


# Starts: each run records when its function's first line ran, in the benchmark's redis-server.

_starts: Any = None


def record_start(key: str) -> None:
    """Push ``"<key> <time>"`` to the list ``bench:starts`` (one client per process)."""
    global _starts
    if _starts is None:
        import redis
        from django.conf import settings

        _starts = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    _starts.rpush("bench:starts", f"{key} {time.time()}")


@side_effect
def mark_start(key: str) -> None:
    record_start(key)


@side_effect(max_attempts=3)
def fail_once_then_mark(key: str) -> None:
    """Fails its first attempt, so its retry's start can be compared with its due time."""
    from critical_path import current_job

    if current_job().attempt == 1:
        raise ConnectionError("the first attempt fails")
    record_start(key)


@side_effect(rate="10/s")
def rate_limited_mark(key: str) -> None:
    """Emitted in a burst: most are postponed by the rate limit, and come back when their token is due."""
    record_start(key)
