"""``replay`` and ``discard``: the one implementation behind the admin, the management commands and the API.

Each moves jobs in batches, one transaction each, so moving 40,000 jobs holds
no long lock. Each batch is a compare-and-set: the jobs still in a state that
allows the move are locked and moved; those another process moved in the
meantime are skipped, and only the jobs moved are counted, published or
recorded by ``on_batch``. A selection is read a batch of ids at a time
(``id_batches``), so memory and query size are bounded by the batch, not by
the number of jobs selected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice

from django.db import router, transaction

from critical_path.models import Job, JobQuerySet
from critical_path.observability import metrics
from critical_path.publishing import dispatcher
from critical_path.publishing.handoff import HANDOFF_COLUMNS, Handoff

#: Called inside each batch's transaction with the database and the ids of the jobs the batch moved.
OnBatch = Callable[[str, list[int]], None]


def replay(
    jobs: JobQuerySet | Iterable[int],
    *,
    using: str | None = None,
    batch_size: int = 500,
    on_batch: OnBatch | None = None,
) -> int:
    """Dead or failed jobs → pending, attempts reset, history kept; published after each batch commits.

    Works in batches, one transaction each, so replaying 40,000 jobs holds no
    long lock. Jobs another process moved in the meantime are skipped. Returns
    how many were replayed. ``on_batch`` (an audit trail, say) runs inside each
    batch's transaction, so it records exactly what the batch moved.
    """
    return _in_batches(jobs, using, batch_size, _replay_batch, on_batch)


def discard(
    jobs: JobQuerySet | Iterable[int],
    *,
    using: str | None = None,
    batch_size: int = 500,
    on_batch: OnBatch | None = None,
) -> int:
    """Pending, enqueued, failed or dead jobs → discarded. Returns how many were discarded."""
    return _in_batches(jobs, using, batch_size, _discard_batch, on_batch)


def _replay_batch(queryset: JobQuerySet, database: str) -> list[int]:
    locked = queryset.replayable().select_for_update(skip_locked=True)
    handoffs = [Handoff(database, *row) for row in locked.values_list(*HANDOFF_COLUMNS)]
    # The rows are locked (PostgreSQL) or the transaction holds the write lock (SQLite): they all move.
    Job.objects.using(database).filter(pk__in=[handoff.job_id for handoff in handoffs]).replay()
    for handoff in handoffs:
        metrics.count("replayed", handoff.effect, handoff.queue)
        transaction.on_commit(partial(dispatcher.submit, handoff), using=database, robust=True)
    return [handoff.job_id for handoff in handoffs]


def _discard_batch(queryset: JobQuerySet, database: str) -> list[int]:
    locked = queryset.discardable().select_for_update(skip_locked=True)
    rows = list(locked.values_list("pk", "effect", "queue", "ordering_key"))
    ids = [row[0] for row in rows]
    Job.objects.using(database).filter(pk__in=ids).discard()
    for _, effect, queue, _key in rows:
        metrics.count("discarded", effect, queue)
    keys = {key for *_, key in rows if key is not None}
    if keys:  # a discarded job may have been the head of its key's line: the next one's turn has come
        transaction.on_commit(partial(dispatcher.hand_off_next, database, keys), using=database, robust=True)
    return ids


def id_batches(jobs: JobQuerySet, batch_size: int, limit: int | None = None) -> Iterator[list[int]]:
    """Ids of ``jobs`` in id order, ``batch_size`` at a time, one keyset query per batch.

    Keyset paging (``id > last``) rather than OFFSET: each query costs the
    same however far along it is, and rows that leave the selection while it
    runs (replayed by us or by someone else) shift nothing.
    """
    last, left = 0, limit
    while left is None or left > 0:
        size = batch_size if left is None else min(batch_size, left)
        ids = list(jobs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]
        if left is not None:
            left -= len(ids)
        if len(ids) < size:
            return


def _in_batches(
    jobs: JobQuerySet | Iterable[int],
    using: str | None,
    batch_size: int,
    apply: Callable[[JobQuerySet, str], list[int]],
    on_batch: OnBatch | None,
) -> int:
    if isinstance(jobs, JobQuerySet):
        database = using or jobs.db
        batches = _selected(jobs.using(database), batch_size)
    else:
        database = using or router.db_for_write(Job)
        batches = _given(iter(jobs), batch_size)
    total = 0
    for ids in batches:  # each batch's ids are read outside its transaction, as the selection's were
        with transaction.atomic(using=database):
            batch = Job.objects.using(database).filter(pk__in=ids)
            moved = apply(batch, database)
            if moved and on_batch is not None:
                on_batch(database, moved)
            total += len(moved)
    return total


def _selected(jobs: JobQuerySet, batch_size: int) -> Iterator[list[int]]:
    if jobs.query.is_sliced:  # a slice cannot be filtered further; its ids are as few as the slice
        yield from _given(iter(jobs.values_list("pk", flat=True)), batch_size)
        return
    # The jobs selected now: those that join the selection later with higher ids (new emits) are not chased.
    newest = jobs.order_by("-pk").values_list("pk", flat=True).first()
    if newest is not None:
        yield from id_batches(jobs.filter(pk__lte=newest), batch_size)


def _given(ids: Iterator[int], batch_size: int) -> Iterator[list[int]]:
    while batch := list(islice(ids, batch_size)):
        yield batch
