"""Three side effects of a signup, as the benchmark emits them (no worker runs them here)."""

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
