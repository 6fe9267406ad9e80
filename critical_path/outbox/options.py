"""The options of ``@side_effect(...)`` and ``.using(...)``, and their validation.

Each option is checked where it is given, when the side effect is declared or
copied with ``.using()``, so a bad value fails at import or inside the caller's
transaction, never in a worker. ``SideEffectOptions`` names the declaration's
options once, for the decorator, its overloads and ``SideEffect``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

from critical_path.core import arguments
from critical_path.exceptions import InvalidOption, InvalidSideEffect

MAX_PRIORITY = 9
MAX_KEY_LENGTH = 255

_RATE = re.compile(r"^\s*([1-9][0-9]*)\s*/\s*(s|m|h)\s*$")
_PERIODS = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1)}


class SideEffectOptions(TypedDict, total=False):
    """What ``@side_effect(...)`` takes; one left out takes its default (``SideEffect.__init__``)."""

    max_attempts: int | None
    queue: str | None
    time_limit: float | None
    soft_time_limit: float | None
    priority: int
    atomic: bool
    version: int
    coalesce: bool
    rate: str | None


@dataclass(frozen=True)
class Rate:
    """``count`` runs per ``period``, evenly spaced: one every ``interval``."""

    count: int
    period: timedelta

    @classmethod
    def parse(cls, value: str) -> Rate:
        """``"100/m"`` → 100 per minute (``s``, ``m`` or ``h``); ``InvalidOption`` otherwise."""
        match = _RATE.match(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidOption(
                f'rate must be a str "<count>/<s|m|h>", such as "100/m" (100 runs a minute, across all workers); '
                f"got {value!r}."
            )
        return cls(int(match[1]), _PERIODS[match[2]])

    @property
    def interval(self) -> timedelta:
        return self.period / self.count

    def __str__(self) -> str:
        unit = {period: unit for unit, period in _PERIODS.items()}[self.period]
        return f"{self.count}/{unit}"


def check_names(declared: Mapping[str, Any], caller: str) -> None:
    """Refuse a keyword that ``SideEffectOptions`` does not name, as Python refuses one a signature lacks."""
    for name in declared:
        if name not in SideEffectOptions.__optional_keys__:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")


def check_function(func: Any) -> None:
    if not inspect.isfunction(func):
        raise InvalidSideEffect(f"@side_effect decorates functions; got {func!r}.")
    qualname = func.__qualname__
    if "<" in qualname or "." in qualname or func.__module__ == "__main__":
        raise InvalidSideEffect(
            f"@side_effect needs a module-level function that a worker can import by its path; "
            f"{func.__module__}.{qualname} is not one. Move it to the top level of an importable module."
        )


def check_positive_int(name: str, value: int | None) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise InvalidOption(f"{name} must be a positive int; got {value!r}.")
    return value


def check_time_limit(name: str, value: float | None) -> float | None:
    if value is not None and (type(value) not in (int, float) or not value > 0):
        raise InvalidOption(f"{name} must be a positive number of seconds; got {value!r}.")
    return value


def check_soft_time_limit(value: float | None, hard_limit: float | None) -> float | None:
    # Against CRITICAL_PATH_TIME_LIMIT, when the side effect sets no hard limit: check W002 (settings are
    # not read at import).
    check_time_limit("soft_time_limit", value)
    if value is not None and hard_limit is not None and not value < hard_limit:
        raise InvalidOption(
            f"soft_time_limit must be below time_limit, or the worker kills the attempt before the soft limit "
            f"can stop it; got soft_time_limit={value!r}, time_limit={hard_limit!r}."
        )
    return value


def check_bool(name: str, value: bool) -> bool:
    if type(value) is not bool:
        raise InvalidOption(f"{name} must be True or False; got {value!r}.")
    return value


def check_priority(value: int) -> int:
    if type(value) is not int or not 0 <= value <= MAX_PRIORITY:
        raise InvalidOption(f"priority must be an int from 0 to {MAX_PRIORITY} (higher runs first); got {value!r}.")
    return value


def check_rate(value: str | None) -> Rate | None:
    return None if value is None else Rate.parse(value)


def check_queue(value: str | None) -> str | None:
    if value is not None:
        if type(value) is not str or not value.strip() or len(value) > MAX_KEY_LENGTH:
            raise InvalidOption(f"queue must be a non-empty str of at most {MAX_KEY_LENGTH} characters; got {value!r}.")
        arguments.check_text(value, "queue")
    return value


def check_text(name: str, value: str) -> str:
    if type(value) is not str or not value.strip() or len(value) > MAX_KEY_LENGTH:
        raise InvalidOption(f"{name} must be a non-empty str of at most {MAX_KEY_LENGTH} characters; got {value!r}.")
    arguments.check_text(value, name)
    return value


def check_delay(value: timedelta | float) -> timedelta:
    if type(value) in (int, float):
        value = timedelta(seconds=value)  # type: ignore[arg-type]
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise InvalidOption(f"delay must be a timedelta or a number of seconds, not negative; got {value!r}.")
    return value


def check_database(value: str) -> str:
    # Inside, as the root package imports this module (through effects.py): importing critical_path imports
    # nothing of Django's.
    from django.db import connections

    if value not in connections.settings:
        known = ", ".join(sorted(connections.settings))
        raise InvalidOption(f"database {value!r} is not in settings.DATABASES (known aliases: {known}).")
    return value
