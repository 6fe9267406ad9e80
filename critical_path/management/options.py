"""Argument types and checks shared by the management commands; each error says what a valid value is."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, time, timedelta

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def duration(value: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` (or ``45s``)."""
    match = _DURATION.match(value)
    if not match:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30m, 12h, 7d or 2w (units s, m, h, d, w), got {value!r}"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def moment(value: str) -> datetime:
    """An ISO 8601 date (midnight) or date and time; without an offset, in the current time zone."""
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            parsed = datetime.combine(day, time()) if day else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or date and time such as 2026-05-01 or 2026-05-01T14:30+00:00, got {value!r}"
        )
    if settings.USE_TZ and timezone.is_naive(parsed):
        return timezone.make_aware(parsed)
    if not settings.USE_TZ and timezone.is_aware(parsed):
        return timezone.make_naive(parsed)
    return parsed


def add_databases_argument(parser: argparse.ArgumentParser) -> None:
    """``--database ALIAS``, repeatable, for the commands that relay several databases."""
    parser.add_argument(
        "--database",
        action="append",
        dest="databases",
        metavar="ALIAS",
        help="Database alias to relay (repeatable; default: every alias the outbox migrates to).",
    )


def check_database(alias: str) -> str:
    if alias not in connections.settings:
        raise CommandError(f"Unknown database alias {alias!r}; known: {', '.join(sorted(connections.settings))}.")
    return alias
