"""Showing a job's arguments to people: pretty-printed JSON with values under secret-looking keys masked."""

from __future__ import annotations

import json
from typing import Any

from critical_path.conf import settings

MASK = "********"


def is_secret(key: str) -> bool:
    """Whether ``key`` contains one of ``CRITICAL_PATH_ADMIN_SECRET_KEYS`` (case-insensitive)."""
    lowered = key.lower()
    return any(word.lower() in lowered for word in settings.ADMIN_SECRET_KEYS)


def masked(value: Any) -> Any:
    """``value`` with every value under a secret-looking key, at any depth, replaced by a mask."""
    if isinstance(value, dict):
        return {key: MASK if is_secret(str(key)) else masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def pretty(value: Any, *, mask: bool = True) -> str:
    """Indented JSON, keys in their order, non-ASCII kept readable."""
    return json.dumps(masked(value) if mask else value, indent=2, ensure_ascii=False)
