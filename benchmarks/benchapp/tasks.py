"""Celery tasks the benchmark's workers find by autodiscovery."""

from celery import shared_task


# The drain's baseline: a bare Celery task that does nothing, acked late as critical_path's deliver task is.
@shared_task(name="benchmarks.bare", ignore_result=True, acks_late=True)
def bare(job_id: int, database: str) -> None: ...
