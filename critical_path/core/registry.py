"""Path → declared side effect: what the ``effect`` column of a job names, in this process.

``@side_effect`` registers each function it declares under its import path,
and a job stores that path. A worker, a relay or the admin finds the
declaration again with ``resolve(path)``, which imports the path's module if
this process has not yet. A value at a path that ``@side_effect`` did not
declare may still run as a side effect (a Django ``Task``): adapters registered
with ``register_adapter()`` turn it into one. ``apps.ready()`` registers the
tasks framework's, so the registry names nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeGuard


class Declared(Protocol):
    """What the parts below the outbox read of a side effect (``critical_path.outbox.effects.SideEffect``)."""

    path: str
    time_limit: float | None
    soft_time_limit: float | None


#: Turns a value found at a job's path into the side effect that runs it, or ``None`` if it cannot.
Adapter = Callable[[Any], Declared | None]

_registry: dict[str, Declared] = {}
_adapters: list[Adapter] = []


def register(effect: Declared) -> None:
    """Record ``effect`` under its path (``@side_effect`` does, for each function it declares)."""
    _registry[effect.path] = effect


def register_adapter(adapter: Adapter) -> None:
    """Ask ``adapter`` about values at a job's path that ``@side_effect`` did not declare (once, however often)."""
    if adapter not in _adapters:
        _adapters.append(adapter)


def registered() -> list[Declared]:
    """The side effects declared so far in this process."""
    return list(_registry.values())


def resolve(path: str) -> Declared:
    """The side effect declared at ``path``, importing its module if this process has not yet."""
    effect = _registry.get(path)
    if effect is not None:
        return effect
    # Inside, as the root package imports this module: importing critical_path (the pytest plugin, too)
    # imports nothing of Django's.
    from django.utils.module_loading import import_string

    try:
        value: object = import_string(path)
    except ImportError as exc:
        raise LookupError(
            f"No side effect at {path!r} in this process ({exc}). If it was renamed or removed, deploy it "
            "again under that path to run the job, or discard the job."
        ) from exc
    if _declared(value):
        return value
    for adapter in _adapters:
        effect = adapter(value)
        if effect is not None:
            return effect
    raise LookupError(
        f"{path!r} is a {type(value).__name__}, not a side effect declared with @side_effect nor a task declared "
        "with @task."
    )


def _declared(value: object) -> TypeGuard[Declared]:
    # What @side_effect registered, found under this path or (imported into another module) under its own.
    path = getattr(value, "path", None)
    return isinstance(path, str) and _registry.get(path) is value
