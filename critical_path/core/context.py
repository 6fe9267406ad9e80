"""What a running side effect can know about the job it is running for."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

from critical_path.exceptions import NoCurrentJob

if TYPE_CHECKING:
    from critical_path.models import Job


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job being run. ``idempotency_key`` is stable across attempts: send it to the outside world."""

    id: int
    database: str
    effect: str
    idempotency_key: str
    attempt: int
    max_attempts: int
    correlation_id: str

    @classmethod
    def of(cls, job: Job, attempt: int) -> JobContext:
        """The context of ``job``'s attempt ``attempt``, on the database the job was read from."""
        return cls(
            id=job.pk,
            database=job.database,
            effect=job.effect,
            idempotency_key=job.effective_idempotency_key,
            attempt=attempt,
            max_attempts=job.max_attempts,
            correlation_id=job.correlation_id,
        )


_current: ContextVar[JobContext | None] = ContextVar("critical_path_current_job", default=None)


def current_job() -> JobContext:
    """The job whose side effect is running now; raises ``NoCurrentJob`` anywhere else."""
    job = _current.get()
    if job is None:
        raise NoCurrentJob(
            "current_job() is only available while a side effect runs from its job (in a Celery worker, "
            "or in tests through critical_path's delivery); it was called outside one."
        )
    return job


def current_job_or_none() -> JobContext | None:
    return _current.get()


def running(job: JobContext) -> Token[JobContext | None]:
    """Set the current job; returns the token to ``reset`` it with."""
    return _current.set(job)


def reset(token: Token[JobContext | None]) -> None:
    _current.reset(token)
