"""Peers' variants of the latency benchmark, where their packages are installed (the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Callable


def prepare() -> None:
    """Set up what the installed peers need beyond ``migrate``."""


def variants() -> dict[str, Callable[[], None]]:
    return {}
