"""The dispatcher's mark of a published batch, compiled once per database and batch size.

``JobQuerySet.hand_off`` is the one definition of the pending → enqueued move;
compiling it through the ORM costs about 0.6 ms of CPU per batch, taken from the
requests of the process the dispatcher runs in. The statement differs from batch
to batch only by the ids (see ``statements``), so it is compiled for sizes 1, 2,
4, 8 …; a batch fills the next size up by repeating its last id.
"""

from __future__ import annotations

from critical_path import statements

_ID = statements.JOB_ID  # a batch's stand-ins count down from here


def hand_off(ids: list[int], *, using: str) -> int:
    """``Job.objects.using(using).filter(pk__in=ids).hand_off()``, compiled once: how many rows moved."""
    if not ids:
        return 0
    size = 1 << (len(ids) - 1).bit_length()
    statement = statements.compiled(("hand_off", using, size), lambda: _compile(using, size))
    padded = ids + ids[-1:] * (size - len(ids))
    return statement.execute(using, {str(n): job_id for n, job_id in enumerate(padded)})


def _compile(using: str, size: int) -> statements.Statement:
    from critical_path.models import Job, hand_off_values

    stand_ins = [_ID - n for n in range(size)]
    return statements.compile_update(
        Job.objects.using(using).filter(pk__in=stand_ins).handed_off_from(),
        hand_off_values(),
        {str(n): [(stand_in, statements.same)] for n, stand_in in enumerate(stand_ins)},
    )
