"""The hot transitions, compiled once per database: the worker's claim and success, the dispatcher's mark.

``JobQuerySet.claim`` is one UPDATE whose CASE and EXISTS expressions (ordering
keys, coalescing) take Django's ORM milliseconds of CPU to compile, far more
than the database takes to run them. It differs from job to job only by the
job's id and its lease (see ``statements``). Where the database can, it returns
the claimed row, so the worker reads the job in the same round trip. The
success (``JobQuerySet.succeed`` without a return value) differs by the id and
the claim it fences on (``Job.claims``).

``JobQuerySet.hand_off`` is the one definition of the dispatcher's pending →
enqueued move; compiling it through the ORM costs about 0.6 ms of CPU per batch,
taken from the requests of the process the dispatcher runs in. It differs from
batch to batch only by the ids, so it is compiled for sizes 1, 2, 4, 8 …; a
batch fills the next size up by repeating its last id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import CharField, Func, Value
from django.db.models.lookups import Exact

from critical_path.store import statements

if TYPE_CHECKING:
    from critical_path.models import Job

_ID = statements.JOB_ID
_LEASE = timedelta(days=7707, microseconds=7)
_CLAIM = 30_707  # marks the claim's place; in the field's range, or the ORM compiles an empty set


def claim(job_id: int, lease: timedelta, *, using: str) -> Job | None:
    """``Job.objects.using(using).filter(pk=job_id).claim(lease)``, compiled once: the claimed job, or None.

    The claim's subqueries for ordering and coalescing keys make PostgreSQL
    plan it for longer than it runs it (about 1.4 ms of the database's CPU
    against 0.2 ms), and most jobs have neither key. So a plain claim, which
    only takes a job without keys, goes first; the full one runs when it took
    nothing. Both are the same compare-and-set: a job claimed by one is not
    claimable by the other.
    """
    values = {"id": job_id, "lease": lease}
    for plain in (True, False):
        claimed = _claim(using, plain, values)
        if claimed is not None:
            return claimed
    return None


def _claim(using: str, plain: bool, values: dict[str, Any]) -> Job | None:
    from critical_path.models import Job

    returning = statements.supports_returning(using)
    statement = statements.compiled(("claim", using, plain, returning), lambda: _compile_claim(using, plain, returning))
    if returning:
        claimed = statement.execute_returning(using, values)
        return claimed[0] if claimed else None
    if not statement.execute(using, values):
        return None
    return Job.objects.using(using).get(pk=values["id"])


def _compile_claim(using: str, plain: bool, returning: bool) -> statements.Statement:
    from django.db import connections
    from django.utils.duration import duration_microseconds

    from critical_path.models import Job, claim_values

    jobs = Job.objects.using(using).filter(pk=_ID)
    if connections[using].vendor == "postgresql":
        jobs = jobs.filter(asynchronous_commit())
    # A database with an interval type takes the lease as a timedelta; SQLite, as microseconds.
    lease_forms = [(_LEASE, statements.same), (duration_microseconds(_LEASE), duration_microseconds)]
    return statements.compile_update(
        jobs.claimable_plain() if plain else jobs.claimable(),
        claim_values(_LEASE, plain=plain),
        {"id": [(_ID, statements.same)], "lease": lease_forms},
        returning=returning,
    )


def asynchronous_commit() -> Exact:
    """A condition that is always true and makes the claim's own transaction commit without waiting for its WAL.

    ``set_config(..., true)`` lasts until the end of the transaction, here the
    claim's own (it runs in autocommit), and PostgreSQL reads
    ``synchronous_commit`` when that commits. Only a crash of the database
    server (not of the worker) within a fraction of a second of the claim loses
    it: the job is then ``enqueued`` again with its message consumed, and the
    relay publishes it again after ``REPUBLISH_AFTER`` (it runs again if it had
    run; the success, committed durably after it, cannot outlive it). The worker
    does not wait for the disk before it starts the side effect.
    """
    setting = Func(
        Value("synchronous_commit"), Value("off"), Value(True), function="set_config", output_field=CharField()
    )
    return Exact(setting, Value("off"))


def succeed(job_id: int, claim: int, *, using: str) -> int:
    """``Job.objects.using(using).filter(pk=job_id).succeed(claim)``, compiled once: how many rows moved."""
    statement = statements.compiled(("succeed", using), lambda: _compile_success(using))
    return statement.execute(using, {"id": job_id, "claim": claim})


def _compile_success(using: str) -> statements.Statement:
    from critical_path.models import Job, success_values

    return statements.compile_update(
        Job.objects.using(using).filter(pk=_ID).held(_CLAIM),
        success_values(),
        {"id": [(_ID, statements.same)], "claim": [(_CLAIM, statements.same)]},
    )


def hand_off(ids: list[int], *, using: str) -> int:
    """``Job.objects.using(using).filter(pk__in=ids).hand_off()``, compiled once: how many rows moved."""
    if not ids:
        return 0
    size = 1 << (len(ids) - 1).bit_length()
    statement = statements.compiled(("hand_off", using, size), lambda: _compile_hand_off(using, size))
    padded = ids + ids[-1:] * (size - len(ids))
    return statement.execute(using, {str(n): job_id for n, job_id in enumerate(padded)})


def _compile_hand_off(using: str, size: int) -> statements.Statement:
    from critical_path.models import Job, hand_off_values

    stand_ins = [_ID - n for n in range(size)]  # a batch's stand-ins count down from the one stand-in id
    return statements.compile_update(
        Job.objects.using(using).filter(pk__in=stand_ins).pending_due(),
        hand_off_values(),
        {str(n): [(stand_in, statements.same)] for n, stand_in in enumerate(stand_ins)},
    )
