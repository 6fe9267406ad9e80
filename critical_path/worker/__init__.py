"""One delivery in a Celery worker: claim, rate limit, run, record the outcome."""
