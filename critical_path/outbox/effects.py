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
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload

from critical_path.core import arguments, registry
from critical_path.exceptions import InvalidArguments, InvalidOption, InvalidSideEffect
from critical_path.worker.rate_limits import Rate

if TYPE_CHECKING:
    from critical_path.models import Job

P = ParamSpec("P")
R = TypeVar("R")
#: Turns one version's ``(args, kwargs)`` into the next version's.
Upgrade = Callable[[list[Any], dict[str, Any]], tuple[list[Any], dict[str, Any]]]

MAX_PRIORITY = 9
MAX_KEY_LENGTH = 255


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
        self,
        func: Callable[P, R],
        *,
        max_attempts: int | None = None,
        queue: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        priority: int = 0,
        atomic: bool = False,
        version: int = 1,
        coalesce: bool = False,
        rate: str | None = None,
        options: Options | None = None,
    ) -> None:
        self.func = func
        self.path = f"{func.__module__}.{func.__qualname__}"
        self.max_attempts = _check_positive_int("max_attempts", max_attempts)
        self.queue = _check_queue(queue)
        self.time_limit = _check_time_limit("time_limit", time_limit)
        self.soft_time_limit = _check_soft_time_limit(soft_time_limit, self.time_limit)
        self.priority = _check_priority(priority)
        self.atomic = _check_bool("atomic", atomic)
        self.version = _check_positive_int("version", version) or 1
        self.coalesce = _check_bool("coalesce", coalesce)
        self.rate = None if rate is None else Rate.parse(rate)
        self.upgrades: dict[int, Upgrade] = {}
        self.options = options or Options()
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<SideEffect {self.path}>"

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
            changes["key"] = _check_key(key)
        if delay is not None:
            changes["delay"] = _check_delay(delay)
        if database is not None:
            changes["database"] = _check_database(database)
        if queue is not None:
            changes["queue"] = _check_queue(queue)
        if priority is not None:
            changes["priority"] = _check_priority(priority)
        if coalesce_key is not None:
            changes["coalesce_key"] = _check_text_option("coalesce_key", coalesce_key)
        if ordering_key is not None:
            changes["ordering_key"] = _check_text_option("ordering_key", ordering_key)
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
        from critical_path.outbox import write

        return write.emit(self, args, kwargs, args_json, kwargs_json, coalesce_key)

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
def side_effect(
    *,
    max_attempts: int | None = None,
    queue: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    priority: int = 0,
    atomic: bool = False,
    version: int = 1,
    coalesce: bool = False,
    rate: str | None = None,
) -> Callable[[Callable[P, R]], SideEffect[P, R]]: ...


def side_effect(
    func: Callable[P, R] | None = None,
    /,
    *,
    max_attempts: int | None = None,
    queue: str | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    priority: int = 0,
    atomic: bool = False,
    version: int = 1,
    coalesce: bool = False,
    rate: str | None = None,
) -> SideEffect[P, R] | Callable[[Callable[P, R]], SideEffect[P, R]]:
    """Declare a module-level function as a side effect (``@side_effect`` or ``@side_effect(...)``)."""

    def decorate(func: Callable[P, R]) -> SideEffect[P, R]:
        _check_function(func)
        effect = SideEffect(
            func,
            max_attempts=max_attempts,
            queue=queue,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            priority=priority,
            atomic=atomic,
            version=version,
            coalesce=coalesce,
            rate=rate,
        )
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


def _check_function(func: Any) -> None:
    if not inspect.isfunction(func):
        raise InvalidSideEffect(f"@side_effect decorates functions; got {func!r}.")
    qualname = func.__qualname__
    if "<" in qualname or "." in qualname or func.__module__ == "__main__":
        raise InvalidSideEffect(
            f"@side_effect needs a module-level function that a worker can import by its path; "
            f"{func.__module__}.{qualname} is not one. Move it to the top level of an importable module."
        )


def _check_positive_int(name: str, value: int | None) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise InvalidOption(f"{name} must be a positive int; got {value!r}.")
    return value


def _check_time_limit(name: str, value: float | None) -> float | None:
    if value is not None and (type(value) not in (int, float) or not value > 0):
        raise InvalidOption(f"{name} must be a positive number of seconds; got {value!r}.")
    return value


def _check_soft_time_limit(value: float | None, hard_limit: float | None) -> float | None:
    # Against CRITICAL_PATH_TIME_LIMIT, when the side effect sets no hard limit: check W002 (settings are
    # not read at import).
    _check_time_limit("soft_time_limit", value)
    if value is not None and hard_limit is not None and not value < hard_limit:
        raise InvalidOption(
            f"soft_time_limit must be below time_limit, or the worker kills the attempt before the soft limit "
            f"can stop it; got soft_time_limit={value!r}, time_limit={hard_limit!r}."
        )
    return value


def _check_bool(name: str, value: bool) -> bool:
    if type(value) is not bool:
        raise InvalidOption(f"{name} must be True or False; got {value!r}.")
    return value


def _check_priority(value: int) -> int:
    if type(value) is not int or not 0 <= value <= MAX_PRIORITY:
        raise InvalidOption(f"priority must be an int from 0 to {MAX_PRIORITY} (higher runs first); got {value!r}.")
    return value


def _check_queue(value: str | None) -> str | None:
    if value is not None:
        if type(value) is not str or not value.strip() or len(value) > MAX_KEY_LENGTH:
            raise InvalidOption(f"queue must be a non-empty str of at most {MAX_KEY_LENGTH} characters; got {value!r}.")
        arguments.check_text(value, "queue")
    return value


def _check_key(value: str) -> str:
    return _check_text_option("key", value)


def _check_text_option(name: str, value: str) -> str:
    if type(value) is not str or not value.strip() or len(value) > MAX_KEY_LENGTH:
        raise InvalidOption(f"{name} must be a non-empty str of at most {MAX_KEY_LENGTH} characters; got {value!r}.")
    arguments.check_text(value, name)
    return value


def _check_delay(value: timedelta | float) -> timedelta:
    if type(value) in (int, float):
        value = timedelta(seconds=value)  # type: ignore[arg-type]
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise InvalidOption(f"delay must be a timedelta or a number of seconds, not negative; got {value!r}.")
    return value


def _check_database(value: str) -> str:
    from django.db import connections

    if value not in connections.settings:
        known = ", ".join(sorted(connections.settings))
        raise InvalidOption(f"database {value!r} is not in settings.DATABASES (known aliases: {known}).")
    return value
