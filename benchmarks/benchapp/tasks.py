"""Celery tasks the benchmark's workers find by autodiscovery."""

from celery import shared_task


# The drain's baseline: a bare Celery task that does nothing, acked late as critical_path's deliver task is.
@shared_task(name="benchmarks.bare", ignore_result=True, acks_late=True)
def bare(job_id: int, database: str) -> None: ...


# What delay_on_commit runs in benchmarks.starts, beside critical_path's mark_start.
@shared_task(name="benchmarks.mark_start", ignore_result=True, acks_late=True)
def mark_start_task(key: str) -> None:
    from benchmarks.benchapp.effects import record_start

    record_start(key)
