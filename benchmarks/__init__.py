"""Benchmarks of critical_path; the package loads its Celery app, as a Django project's package does."""

from benchmarks.celery_app import app as celery_app

__all__ = ["celery_app"]
