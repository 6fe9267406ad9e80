"""Peers' variants of the latency benchmark, each only where its packages are installed (the ``bench`` extra).

  procrastinate   three ``defer`` calls in the transaction (procrastinate's Django
                  integration: the jobs are rows of its own tables, written
                  through Django's connection)
  django_tasks    three ``enqueue`` calls to django-tasks' database backend
                  (``django_tasks_db``: a row per task, in the transaction)

Both write their jobs in the caller's transaction, as the outbox does; neither
runs a worker here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.util import find_spec

#: Each peer's Django apps, and the distributions to install when it is missing.
PEERS = {
    "procrastinate": (["procrastinate.contrib.django"], "procrastinate"),
    "django_tasks": (["django_tasks", "django_tasks_db"], "django-tasks django-tasks-db"),
}


def _has_django_tasks() -> bool:
    # Django 6.0 has django.tasks; with Django 5.2 the backport django_tasks provides it.
    return bool(find_spec("django_tasks_db")) and bool(find_spec("django.tasks") or find_spec("django_tasks"))


def installed() -> list[str]:
    """The peers whose packages are importable."""
    found = []
    if find_spec("procrastinate") and find_spec("psycopg"):
        found.append("procrastinate")
    if _has_django_tasks():
        found.append("django_tasks")
    return found


def installed_apps() -> list[str]:
    """The Django apps of the installed peers, for the benchmark's settings."""
    apps = []
    for peer in installed():
        names = PEERS[peer][0]
        if peer == "django_tasks" and find_spec("django.tasks"):
            names = [name for name in names if name != "django_tasks"]  # built in since Django 6.0
        apps += names
    return apps


def prepare() -> None:
    """Say which peers are left out, and why."""
    for peer, (_, packages) in PEERS.items():
        if peer not in installed():
            print(f"note: {peer} is not installed, its variant is skipped (pip install {packages}, "
                  "or the bench extra)", file=sys.stderr)  # fmt: skip


def variants() -> dict[str, Callable[[], None]]:
    """The request of each installed peer's variant."""
    from django.db import transaction

    from benchmarks.benchapp.models import Signup

    found: dict[str, Callable[[], None]] = {}
    if "procrastinate" in installed():
        from benchmarks.benchapp import procrastinate_tasks as jobs

        def procrastinate() -> None:
            with transaction.atomic():
                signup = Signup.objects.create(email="ada@example.com")
                jobs.send_welcome_email.defer(signup_id=signup.pk)
                jobs.sync_crm.defer(signup_id=signup.pk)
                jobs.recompute_stats.defer()

        found["procrastinate"] = procrastinate
    if "django_tasks" in installed():
        from benchmarks.benchapp import django_tasks as tasks

        def django_tasks() -> None:
            with transaction.atomic():
                signup = Signup.objects.create(email="ada@example.com")
                tasks.send_welcome_email.enqueue(signup.pk)
                tasks.sync_crm.enqueue(signup.pk)
                tasks.recompute_stats.enqueue()

        found["django_tasks"] = django_tasks
    return found
