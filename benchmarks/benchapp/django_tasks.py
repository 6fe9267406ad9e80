"""The signup's three side effects as Django tasks (imported only when django-tasks-db is installed)."""

try:
    from django.tasks import task  # Django 6.0
except ImportError:
    from django_tasks import task  # the backport, with Django 5.2


@task(queue_name="bench")
def send_welcome_email(signup_id: int) -> None: ...


@task(queue_name="bench")
def sync_crm(signup_id: int) -> None: ...


@task(queue_name="bench")
def recompute_stats() -> None: ...
