"""Relay heartbeats: what each relay process did on a database, for the admin and the health check."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from django.db import DatabaseError, connections, transaction
from django.db.models import F
from django.db.models.functions import Now

from critical_path.models import RelayHeartbeat, now_plus

logger = logging.getLogger(__name__)

#: Heartbeats of relays not seen for this long are deleted.
RETENTION = timedelta(days=7)


def relay_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def record(database: str, *, published: int, republished: int, rescued: int, trouble: str) -> None:
    """Count one pass in this relay's heartbeat row; a database that is down is the pass's own news.

    ``trouble`` is what went wrong in the pass (a database or broker error), ``''`` if nothing did.
    """
    errors = {"errors": F("errors") + 1, "last_error": trouble, "last_error_at": Now()} if trouble else {}
    heartbeats = RelayHeartbeat.objects.using(database)
    name = relay_name()
    try:
        with transaction.atomic(using=database):
            updated = heartbeats.filter(name=name).update(
                last_run_at=Now(),
                passes=F("passes") + 1,
                published=F("published") + published,
                republished=F("republished") + republished,
                rescued=F("rescued") + rescued,
                **errors,
            )
            if not updated:
                heartbeats.create(
                    name=name,
                    started_at=Now(),
                    last_run_at=Now(),
                    passes=1,
                    published=published,
                    republished=republished,
                    rescued=rescued,
                    errors=1 if trouble else 0,
                    last_error=trouble,
                    last_error_at=Now() if trouble else None,
                )
            heartbeats.filter(last_run_at__lt=now_plus(-RETENTION)).delete()
    except DatabaseError:
        logger.debug("could not record the relay's heartbeat on %s", database, exc_info=True)
        connections[database].close()
