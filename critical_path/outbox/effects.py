"""``@side_effect`` and ``SideEffect``: what users declare and emit.

Everything that can be checked is checked when the side effect is declared or
emitted, inside the caller's transaction, so bad input fails where the caller
can still roll back instead of in a worker minutes later.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, Unpack, overload

from critical_path.core import arguments, registry
from critical_path.exceptions import InvalidArguments, InvalidOption, NotACeleryTask
from critical_path.outbox.options import (
    SideEffectOptions,
    check_bool,
    check_database,
    check_delay,
    check_function,
    check_names,
    check_positive_int,
    check_priority,
    check_queue,
    check_rate,
    check_soft_time_limit,
    check_text,
    check_time_limit,
)

if TYPE_CHECKING:
    from critical_path.models import Job

P = ParamSpec("P")
R = TypeVar("R")
#: A Celery task's ways to be sent or signed, which a side effect answers with ``NotACeleryTask``.
CELERY_TASK_METHODS = frozenset({"delay", "apply_async", "delay_on_commit", "apply", "s", "si", "signature"})
#: Turns one version's ``(args, kwargs)`` into the next version's.
Upgrade = Callable[[list[Any], dict[str, Any]], tuple[list[Any], dict[str, Any]]]


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Per-emit options: set by ``.using()``; ``None`` means the side effect's or the setting's default."""

    key: str | None = None
    delay: timedelta = timedelta(0)
    database: str | None = None
    queue: str | None = None
    priority: int | None = None
    coalesce_key: str | None = None
    ordering_key: str | None = None


class SideEffect(Generic[P, R]):
    """A function that runs after the caller's transaction commits, reliably, in a Celery worker.

    Calling it runs the function now; ``after_commit()`` records a job that runs
    it after commit; ``using()`` returns a copy with per-emit options.
    """

    #: How callers emit it, for the messages of the errors ``after_commit`` raises.
    front_door = "after_commit"

    def __init__(
        self, func: Callable[P, R], *, options: Options | None = None, **declared: Unpack[SideEffectOptions]
    ) -> None:
        check_names(declared, type(self).__name__)
        self.func = func
        self.path = f"{func.__module__}.{func.__qualname__}"
        self.max_attempts = check_positive_int("max_attempts", declared.get("max_attempts"))
        self.queue = check_queue(declared.get("queue"))
        self.time_limit = check_time_limit("time_limit", declared.get("time_limit"))
        self.soft_time_limit = check_soft_time_limit(declared.get("soft_time_limit"), self.time_limit)
        self.priority = check_priority(declared.get("priority", 0))
        self.atomic = check_bool("atomic", declared.get("atomic", False))
        self.version = check_positive_int("version", declared.get("version", 1)) or 1
        self.coalesce = check_bool("coalesce", declared.get("coalesce", False))
        self.rate = check_rate(declared.get("rate"))
        self.upgrades: dict[int, Upgrade] = {}
        self.options = options or Options()
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<SideEffect {self.path}>"

    if not TYPE_CHECKING:  # to mypy, a side effect has only its declared attributes

        def __getattr__(self, name: str) -> Any:
            """Only for missing attributes: a Celery task's methods get an error saying how a side effect is sent."""
            if name in CELERY_TASK_METHODS:
                function = self.__dict__.get("__name__", "effect")
                raise NotACeleryTask(
                    f"{self.__dict__.get('path', function)} is a side effect, not a Celery task: it has no "
                    f".{name}(). Emit it inside the transaction that writes what it needs, with "
                    f"{function}.{self.front_door}(...) (for a countdown, {function}.using(delay=...)"
                    f".{self.front_door}(...)); a worker runs it once the transaction commits."
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def upgrade(self, *, from_version: int) -> Callable[[Upgrade], Upgrade]:
        """Register ``upgrade(args, kwargs) -> (args, kwargs)``, from a ``from_version`` payload to the next version's.

        Jobs emitted before the side effect's arguments changed, dead letters
        among them, then run with the upgraded arguments (their stored payload
        is kept as emitted).
        """
        if type(from_version) is not int or not 1 <= from_version < self.version:
            raise InvalidOption(
                f"from_version must be an int from 1 to {self.version - 1} ({self.path} is at version "
                f"{self.version}); got {from_version!r}."
            )
        if from_version in self.upgrades:
            raise InvalidOption(f"{self.path} already has an upgrade from version {from_version}.")

        def register(upgrade: Upgrade) -> Upgrade:
            self.upgrades[from_version] = upgrade
            return upgrade

        return register

    def using(
        self,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
        database: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        coalesce_key: str | None = None,
        ordering_key: str | None = None,
    ) -> Self:
        """A copy that emits with these options (idempotency key, delay, database, queue, priority, coalesce key,
        ordering key).

        A ``coalesce_key`` makes the job coalesce with the side effect's other
        jobs of that key, whatever their arguments: the newest one's run. Jobs
        with the same ``ordering_key`` run one at a time, in the order they
        were emitted (see the ordering topic in the docs for the exact rule).
        """
        changes: dict[str, Any] = {}
        if key is not None:
            changes["key"] = check_text("key", key)
        if delay is not None:
            changes["delay"] = check_delay(delay)
        if database is not None:
            changes["database"] = check_database(database)
        if queue is not None:
            changes["queue"] = check_queue(queue)
        if priority is not None:
            changes["priority"] = check_priority(priority)
        if coalesce_key is not None:
            changes["coalesce_key"] = check_text("coalesce_key", coalesce_key)
        if ordering_key is not None:
            changes["ordering_key"] = check_text("ordering_key", ordering_key)
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.options = dataclasses.replace(self.options, **changes)
        return copy

    def after_commit(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Record a job running this side effect with these arguments once the transaction commits.

        Returns the saved ``Job``. Outside ``atomic()`` the job is handed off at
        once, as Django's ``on_commit`` does.
        """
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.path}.{self.front_door}{self.signature}: {exc}") from None
        for index, value in enumerate(args):
            arguments.check(value, f"args[{index}]")
        for name, value in kwargs.items():
            arguments.check(value, name)
        args_json = arguments.encode(list(args)) if args else "[]"
        kwargs_json = arguments.encode(kwargs) if kwargs else "{}"
        coalesce_key = self.options.coalesce_key
        if coalesce_key is None and self.coalesce:
            coalesce_key = arguments.digest(list(args), kwargs)
        # Inside, as the root package imports this module while INSTALLED_APPS loads, and emit.py imports models.
        from critical_path.outbox.emit import emit

        return emit(self, args, kwargs, args_json, kwargs_json, coalesce_key)

    def run(self, job: Job, attempt: int, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run the function for attempt ``attempt`` of ``job`` (in a worker); return what the job stores of it.

        A side effect's return value is not stored (``None``); a Django task's is
        (``critical_path.backends.effects``).
        """
        self.func(*args, **kwargs)
        return None


@overload
def side_effect(func: Callable[P, R], /) -> SideEffect[P, R]: ...


@overload
def side_effect(**declared: Unpack[SideEffectOptions]) -> Callable[[Callable[P, R]], SideEffect[P, R]]: ...


def side_effect(
    func: Callable[P, R] | None = None, /, **declared: Unpack[SideEffectOptions]
) -> SideEffect[P, R] | Callable[[Callable[P, R]], SideEffect[P, R]]:
    """Declare a module-level function as a side effect (``@side_effect`` or ``@side_effect(...)``)."""
    check_names(declared, "side_effect")

    def decorate(func: Callable[P, R]) -> SideEffect[P, R]:
        check_function(func)
        effect = SideEffect(func, **declared)
        registry.register(effect)
        return effect

    if func is not None:
        return decorate(func)
    return decorate


def resolve(path: str) -> SideEffect[Any, Any]:
    """The side effect declared at ``path``, importing its module if this process has not yet.

    ``core.registry.resolve`` finds it; this is its answer as the parts that
    run or emit the side effect need it, the whole ``SideEffect``.
    """
    effect = registry.resolve(path)
    if not isinstance(effect, SideEffect):
        raise LookupError(
            f"{path!r} resolved to {effect!r}, which is not a SideEffect: an adapter registered with "
            "critical_path.core.registry.register_adapter() must return one."
        )
    return effect
