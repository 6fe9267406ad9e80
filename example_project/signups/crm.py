"""The CRM's HTTP client: one keep-alive session per thread, bounded by connect and read timeouts."""

from __future__ import annotations

import threading
from typing import Any

import requests
from django.conf import settings

_local = threading.local()


def session() -> requests.Session:
    """This thread's session: reused connections, which ``requests.Session`` does not share safely across threads."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session  # type: ignore[no-any-return]


def upsert_contact(contact: dict[str, Any], *, key: str) -> dict[str, Any]:
    """Create the contact once per ``key``; a repeated key returns the contact it created. Raises on HTTP errors."""
    response = session().post(
        f"{settings.CRM_URL}/contacts",
        json=contact,
        headers={"Idempotency-Key": key},
        timeout=(settings.CRM_CONNECT_TIMEOUT, settings.CRM_READ_TIMEOUT),
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]
