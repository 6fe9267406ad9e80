"""Which Celery app publishes, and whether it reaches the broker the project configured.

Celery's Django guide has the project's package import its Celery app
(``from .celery import app as celery_app`` in ``proj/__init__.py``). A project
that forgets it has no app in its web processes: Celery then hands out a
fallback app of its own, which reads no Django setting and publishes to
``amqp://guest@localhost//``. The hand-off would mark the jobs enqueued on a
broker no worker reads, and nothing would say so. ``problem()`` finds it; the
system checks report it and the publisher refuses to publish with such an app,
so the jobs stay pending, counted in the oldest-pending age, until a process
with the right app relays them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

#: The name Celery gives the fallback app it creates when no app exists (``celery._state``).
FALLBACK_NAME = "default"
#: Celery's broker when nothing names one.
CELERY_DEFAULT_BROKER = "amqp://guest@localhost//"
GUIDE = "define a Celery app that reads Django's settings (proj/celery.py) and import it in proj/__init__.py"


class WrongApp(ImproperlyConfigured):
    """The Celery app in this process would publish where no worker reads."""


@dataclass(frozen=True)
class Problem:
    """What is wrong with the app that would publish; ``refuse``: publishing would lose the messages."""

    message: str
    hint: str
    refuse: bool


def is_fallback(app: Any) -> bool:
    """Whether ``app`` is the app Celery makes up when the process created none."""
    app = getattr(app, "_get_current_object", lambda: app)()
    return getattr(app, "main", None) == FALLBACK_NAME and not getattr(app, "fixups", None)


def problem(app: Any) -> Problem | None:
    """Why ``app`` would not publish to the broker the project's settings name, or ``None``."""
    from django.conf import settings as django_settings

    configured = getattr(django_settings, "CELERY_BROKER_URL", None)
    actual = app.conf.broker_url or CELERY_DEFAULT_BROKER  # Celery also reads CELERY_BROKER_URL from the environment
    fallback = is_fallback(app)
    if configured and str(actual) != str(configured):
        if fallback:
            return Problem(
                f"no Celery app is loaded in this process: Celery's fallback app ignores CELERY_BROKER_URL "
                f"({_safe(configured)}) and would publish to {_safe(actual)}, where no worker reads",
                f"{GUIDE}, as Celery's 'First steps with Django' shows",
                refuse=True,
            )
        return Problem(
            f"the Celery app {app.main!r} does not read CELERY_BROKER_URL ({_safe(configured)}): it publishes to "
            f"{_safe(actual)}",
            "configure it with app.config_from_object('django.conf:settings', namespace='CELERY')",
            refuse=False,
        )
    if fallback:
        return Problem(
            f"no Celery app is loaded in this process: side effects are handed to {_safe(actual)} by Celery's "
            "fallback app, which reads none of the project's CELERY_* settings",
            f"{GUIDE}, and set CELERY_BROKER_URL (e.g. 'redis://localhost:6379/0')",
            refuse=False,
        )
    return None


def _safe(url: Any) -> str:
    """A broker URL without its password."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(str(url)))
