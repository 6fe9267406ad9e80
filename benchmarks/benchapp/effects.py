"""Three side effects of a signup, as the benchmark emits them (no worker runs them here)."""

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
