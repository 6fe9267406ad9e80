"""``manage.py install_relay_schedule``: the relay as a django-celery-beat periodic task."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from critical_path.management.options import add_databases_argument, check_database, positive_float
from critical_path.relay.schedule import install_schedule


class Command(BaseCommand):
    help = (
        "Install the relay's periodic task for django-celery-beat (editable afterwards in the admin's Periodic "
        "tasks). An existing one is left as it is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=positive_float, help="Seconds between passes (default: CRITICAL_PATH_RELAY_INTERVAL, 5)."
        )
        add_databases_argument(parser)
        parser.add_argument(
            "--queue", help="Celery queue of the relay task (default: CRITICAL_PATH_DEFAULT_QUEUE, else Celery's)."
        )

    def handle(self, *, every: float | None, databases: list[str] | None, queue: str | None, **options: Any) -> None:
        databases = [check_database(alias) for alias in databases or ()] or None
        try:
            task, created = install_schedule(every=every, databases=databases, queue=queue)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        state = "enabled" if task.enabled else "disabled"
        if created:
            self.stdout.write(f"Installed {task.name!r}: {task.interval}, {state}. Run celery beat with "
                              "--scheduler django_celery_beat.schedulers:DatabaseScheduler.")  # fmt: skip
        else:
            self.stdout.write(f"{task.name!r} is already installed ({task.schedule}, {state}); edit it in the admin.")
