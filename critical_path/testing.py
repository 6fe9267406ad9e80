"""Helpers for testing code that emits side effects: capture, run inline, run eagerly.

``capture_side_effects()`` records what a block emitted, to assert on without a
broker or a worker. ``run_pending_jobs()`` runs the jobs waiting in the outbox,
in emit order, through the same ``deliver`` a Celery worker runs, so retries and
dead letters behave as in production. ``eager_side_effects()`` (or the setting
``CRITICAL_PATH_EAGER``) runs each job right after its transaction commits.
``no_inline_side_effects()`` fails a block that sends email, opens an outbound
connection or publishes a Celery task inside ``atomic()`` (``critical_path.guard``).
The pytest plugin (``critical_path.pytest_plugin``) offers them as fixtures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

from django.db import router
from django.db.models.functions import Now
from django.test import override_settings

from critical_path import guard
from critical_path.exceptions import CriticalPathError
from critical_path.models import Job
from critical_path.outbox import emit
from critical_path.outbox.effects import Options, SideEffect
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome

__all__ = [
    "CapturedSideEffects",
    "Emitted",
    "JobRun",
    "JobRuns",
    "TooManyRounds",
    "capture_side_effects",
    "eager_side_effects",
    "no_inline_side_effects",
    "run_pending_jobs",
]


class TooManyRounds(CriticalPathError):
    """``run_pending_jobs`` still found due jobs after ``max_rounds`` rounds: likely a side effect emitting itself."""


@dataclasses.dataclass(frozen=True)
class Emitted:
    """One ``after_commit()`` call: the side effect as emitted (with its ``.using()`` options) and its job."""

    effect: SideEffect[Any, Any]
    job: Job

    @property
    def path(self) -> str:
        return self.effect.path

    @property
    def args(self) -> list[Any]:
        return list(self.job.args)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.job.kwargs)

    @property
    def key(self) -> str | None:
        return self.job.idempotency_key

    @property
    def coalesce_key(self) -> str | None:
        return self.job.coalesce_key

    @property
    def ordering_key(self) -> str | None:
        return self.job.ordering_key

    @property
    def delay(self) -> timedelta:
        return self.effect.options.delay

    @property
    def database(self) -> str:
        return self.job.database

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def priority(self) -> int:
        return self.job.priority

    def matches(self, effect: SideEffect[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Same side effect; same arguments if any are given; same options where ``effect.using()`` set them."""
        if effect.path != self.path:
            return False
        if (args or kwargs) and _bound(effect, args, kwargs) != _bound(effect, tuple(self.args), self.kwargs):
            return False
        return all(getattr(self, name) == value for name, value in _set_options(effect.options))

    def __repr__(self) -> str:
        arguments = [repr(value) for value in self.args] + [f"{name}={value!r}" for name, value in self.kwargs.items()]
        options = f"database={self.database!r}, queue={self.queue!r}, priority={self.priority}"
        if self.key is not None:
            options += f", key={self.key!r}"
        if self.ordering_key is not None:
            options += f", ordering_key={self.ordering_key!r}"
        if self.delay:
            options += f", delay={self.delay.total_seconds():g}s"
        return f"{self.path}({', '.join(arguments)}) [{options}]"


class CapturedSideEffects(list[Emitted]):
    """The side effects emitted inside ``capture_side_effects()``, in emit order, with assertions."""

    def of(self, effect: SideEffect[Any, Any]) -> list[Emitted]:
        """Those of ``effect`` (any arguments, any options)."""
        return [emitted for emitted in self if emitted.path == effect.path]

    def assert_emitted(self, effect: SideEffect[Any, Any], /, *args: Any, **kwargs: Any) -> Emitted:
        """Assert ``effect`` was emitted with these arguments (any, if none are given); return the first match.

        Options are asserted by spelling them as when emitting:
        ``emitted.assert_emitted(send_email.using(queue="email", delay=60), user_id=1)``.
        """
        matches = self._matching(effect, args, kwargs)
        if not matches:
            raise AssertionError(f"{_call(effect, args, kwargs)} was not emitted. {self._summary()}")
        return matches[0]

    def assert_emitted_once(self, effect: SideEffect[Any, Any], /, *args: Any, **kwargs: Any) -> Emitted:
        """Assert exactly one emit of ``effect`` matches (see ``assert_emitted``) and return it."""
        matches = self._matching(effect, args, kwargs)
        if len(matches) != 1:
            raise AssertionError(
                f"{_call(effect, args, kwargs)} was emitted {len(matches)} times, not once. {self._summary()}"
            )
        return matches[0]

    def assert_not_emitted(self, effect: SideEffect[Any, Any], /, *args: Any, **kwargs: Any) -> None:
        """Assert no emit of ``effect`` matches (with these arguments, if given)."""
        matches = self._matching(effect, args, kwargs)
        if matches:
            raise AssertionError(f"{_call(effect, args, kwargs)} was emitted: {matches!r}.")

    def _matching(self, effect: SideEffect[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Emitted]:
        if not isinstance(effect, SideEffect):
            raise TypeError(f"Expected a side effect declared with @side_effect; got {effect!r}.")
        return [emitted for emitted in self if emitted.matches(effect, args, kwargs)]

    def _summary(self) -> str:
        if not self:
            return "Nothing was emitted."
        return "Emitted:\n" + "\n".join(f"  {emitted!r}" for emitted in self)


@contextmanager
def capture_side_effects() -> Iterator[CapturedSideEffects]:
    """Record every side effect emitted in the block, from any thread, as ``Emitted`` entries.

    The jobs are written as usual (an emit inside a transaction that rolls back
    is recorded, and its job is gone); the capture only listens.
    """
    emitted = CapturedSideEffects()

    def record(effect: emit.Emitting, job: Job) -> None:
        emitted.append(Emitted(cast(SideEffect[Any, Any], effect), job))  # only SideEffect.after_commit emits

    emit.observers.append(record)
    try:
        yield emitted
    finally:
        emit.observers.remove(record)


@contextmanager
def eager_side_effects() -> Iterator[None]:
    """Run each job in this process right after its transaction commits (``CRITICAL_PATH_EAGER = True``)."""
    with override_settings(CRITICAL_PATH_EAGER=True):
        yield


@contextmanager
def no_inline_side_effects() -> Iterator[guard.Findings]:
    """Fail (``AssertionError``) if the block did side effects inline, listing each with its line.

    Yields the findings so far, to inspect before the block ends.
    """
    with guard.watch() as findings:
        yield findings
    if findings:
        raise AssertionError(f"{len(findings)} side effect(s) done inline:\n{findings.report()}")


@dataclasses.dataclass(frozen=True)
class JobRun:
    """One delivery by ``run_pending_jobs``: the job as it was recorded afterwards, and the outcome."""

    job: Job
    outcome: str

    def __repr__(self) -> str:
        return f"{self.job.effect} #{self.job.pk} attempt {self.job.attempts}: {self.outcome}"


class JobRuns(list[JobRun]):
    """What ``run_pending_jobs`` delivered, in order."""

    @property
    def succeeded(self) -> list[Job]:
        return [run.job for run in self if run.outcome == Outcome.SUCCEEDED]

    @property
    def failed(self) -> list[Job]:
        """Jobs whose attempt failed and that will be retried."""
        return [run.job for run in self if run.outcome == Outcome.FAILED]

    @property
    def dead(self) -> list[Job]:
        return [run.job for run in self if run.outcome == Outcome.DEAD]

    def assert_succeeded(self) -> None:
        """Assert no delivery failed or dead-lettered its job; the message shows each error's last line."""
        bad = [run for run in self if run.outcome in (Outcome.FAILED, Outcome.DEAD)]
        if bad:
            lines = [f"  {run!r}: {run.job.error_line}" for run in bad]
            raise AssertionError(f"{len(bad)} of {len(self)} deliveries failed:\n" + "\n".join(lines))


def run_pending_jobs(*, using: str | None = None, retries: bool = False, max_rounds: int = 50) -> JobRuns:
    """Deliver the due jobs of ``using`` in emit order, then those they emitted, until none is due.

    Each job goes through ``critical_path.worker.delivery.deliver``, as in a worker: a
    failing one is recorded ``failed`` with its backoff (or ``dead``), and nothing
    raises into the test. With ``retries=True``, failed jobs are made due at once
    and run again, round after round, until each succeeds or is dead-lettered.
    Delayed jobs whose time has not come, and jobs waiting in an ordering key's
    line behind one that failed or died, are left alone. Raises ``TooManyRounds``
    when jobs are still due after ``max_rounds`` rounds.
    """
    database = using or router.db_for_write(Job)
    jobs = Job.objects.using(database)
    statuses = list(Job.CLAIMABLE_STATUSES if retries else (Job.Status.PENDING, Job.Status.ENQUEUED))
    runs = JobRuns()
    for _ in range(max_rounds):
        if retries:
            jobs.failed().update(available_at=Now())
        due = jobs.filter(status__in=statuses, available_at__lte=Now()).unblocked().order_by("pk")
        if not due.exists():
            return runs
        for pk in list(due.values_list("pk", flat=True)):
            outcome = delivery.deliver(pk, database)
            runs.append(JobRun(jobs.get(pk=pk), outcome))
    still = ", ".join(f"{job.effect} #{job.pk}" for job in due[:5])
    raise TooManyRounds(
        f"Jobs were still due after {max_rounds} rounds of run_pending_jobs() on {database!r} ({still}): "
        "a side effect probably emits itself, directly or through others. Fix the loop, or pass a larger "
        "max_rounds if the chain really is that long."
    )


def _bound(effect: SideEffect[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        bound = effect.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{effect.path}{effect.signature}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _call(effect: SideEffect[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    text = effect.path
    if args or kwargs:
        parts = [repr(value) for value in args] + [f"{name}={value!r}" for name, value in kwargs.items()]
        text += f"({', '.join(parts)})"
    expected = [
        f"{name}={value.total_seconds():g}s" if isinstance(value, timedelta) else f"{name}={value!r}"
        for name, value in _set_options(effect.options)
    ]
    return f"{text} [{', '.join(expected)}]" if expected else text


def _set_options(options: Options) -> list[tuple[str, Any]]:
    """The options ``.using()`` set (those not at their defaults), in ``Options``' field order."""
    values = [(field, getattr(options, field.name)) for field in dataclasses.fields(options)]
    return [(field.name, value) for field, value in values if value != field.default]
