"""The relay on django-celery-beat's schedule: one periodic task, editable in the admin's Periodic tasks.

It is installed once (``manage.py install_relay_schedule`` or ``install_schedule()`` in
a data migration) and then belongs to the operator: installing again never
overwrites what was edited in the admin.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from critical_path.conf import settings

if TYPE_CHECKING:
    from django_celery_beat.models import PeriodicTask

#: The periodic task's name in the admin.
TASK_NAME = "critical_path: relay outbox"


def install_schedule(
    *, every: float | None = None, databases: list[str] | None = None, queue: str | None = None
) -> tuple[PeriodicTask, bool]:
    """Create the relay's periodic task unless it exists; return it and whether it was created.

    ``every`` defaults to ``CRITICAL_PATH_RELAY_INTERVAL`` (whole seconds, at
    least 1); each run expires after one interval, so runs that a busy or
    stopped worker could not take do not pile up.
    """
    if not apps.is_installed("django_celery_beat"):
        raise ImproperlyConfigured(
            "The relay's schedule needs django-celery-beat: pip install 'django-critical-path[beat]' and add "
            "'django_celery_beat' to INSTALLED_APPS, then migrate."
        )
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    seconds = max(1, math.ceil(every or settings.RELAY_INTERVAL))
    existing = PeriodicTask.objects.filter(name=TASK_NAME).first()
    if existing is not None:
        return existing, False
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name=TASK_NAME,
        task="critical_path.relay",
        interval=interval,
        kwargs=json.dumps({"databases": databases} if databases else {}),
        queue=queue or settings.DEFAULT_QUEUE,
        expire_seconds=seconds,
        description="Publishes lost hand-offs, due retries and lost messages; rescues jobs whose worker died.",
    )
    return task, True
