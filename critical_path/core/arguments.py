"""Refuse arguments that would not come back from JSON exactly as they were given.

A job runs from what the database stored, so an argument that JSON would change
(a tuple becoming a list, an int key becoming a str, a datetime, NaN) would make
the side effect run with something other than what the caller emitted. The
same rules hold on every database: NUL characters, which PostgreSQL refuses and
SQLite keeps, are refused everywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from critical_path.exceptions import ArgumentNotSerializable

MAX_DEPTH = 64

_HINT = "Pass only None, bool, int, finite float, str, list and dict with str keys (e.g. an id, not a model instance)."


def check(value: Any, name: str) -> None:
    """Raise ``ArgumentNotSerializable`` naming the part of ``value`` that JSON would not give back."""
    _check(value, name, 0)


def encode(value: list[Any] | dict[str, Any]) -> str:
    """The JSON text of a value that passed ``check``."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def digest(args: list[Any], kwargs: dict[str, Any]) -> str:
    """A key equal for equal arguments (keyword order and dict order aside): a coalescing job's default key."""
    canonical = json.dumps([args, kwargs], allow_nan=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_text(value: str, name: str) -> None:
    """Refuse NUL characters in a stored string."""
    if "\x00" in value:
        raise ArgumentNotSerializable(f"{name} contains a NUL character, which databases store differently.")


def _check(value: Any, path: str, depth: int) -> None:
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ArgumentNotSerializable(f"{path} is {value!r}, which JSON cannot represent. {_HINT}")
        return
    if kind is str:
        check_text(value, path)
        return
    if depth >= MAX_DEPTH:
        raise ArgumentNotSerializable(f"{path} is nested deeper than {MAX_DEPTH} levels (or refers to itself).")
    if kind is list:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ArgumentNotSerializable(
                    f"{path} has the key {key!r} of type {type(key).__name__}; JSON would turn it into a "
                    f"string. Use str keys."
                )
            check_text(key, f"{path} key {key!r}")
            _check(item, f"{path}[{key!r}]", depth + 1)
        return
    raise ArgumentNotSerializable(
        f"{path} is a {kind.__module__}.{kind.__qualname__} ({_short_repr(value)}), which would not "
        f"round-trip through JSON unchanged. {_HINT}"
    )


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
