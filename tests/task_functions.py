"""Django tasks the tests enqueue through critical_path's backend (tests/unit/backends/test_backends.py).

Not named ``tasks.py``: Celery's autodiscovery imports modules of that name.
"""

from critical_path import PermanentFailure
from critical_path.backends.compat import TaskContext
from tests.effects import record

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task  # type: ignore[no-redef]


@task
def add(a, b):
    record("add", {"a": a, "b": b})
    return a + b


@task(priority=50, queue_name="reports")
def report(name, *, rows=()):
    record("report", {"name": name})
    return {"name": name, "rows": list(rows)}


@task(takes_context=True)
def attempts_seen(context: TaskContext, fail_until):
    """Fails until its attempt ``fail_until``, then returns what its context said."""
    record("attempts_seen", {"attempt": context.attempt})
    if context.attempt < fail_until:
        raise ConnectionError(f"attempt {context.attempt} failed")
    result = context.task_result
    return {"attempt": context.attempt, "id": result.id, "status": str(result.status), "workers": result.worker_ids}


@task
def always_fails():
    record("task_always_fails")
    raise ValueError("the report server is down")


@task
def refuses():
    raise PermanentFailure("no such report")


@task
def returns_a_set():
    record("returns_a_set")
    return {1, 2}


@task
async def add_later(a, b):
    return a + b


@task(backend="other")
def on_other(text):
    record("on_other", {"text": text})
    return text.upper()
