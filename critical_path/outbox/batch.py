"""``batch()``: the side effects a block emits, written with one multi-row INSERT when it exits.

Each ``after_commit()`` is otherwise its own INSERT, a round trip to the
database on the request's critical path. A batch buffers the emits made on
its database at its own level and writes them together just before the block
ends, still inside the caller's transaction, so the outbox's guarantees are
unchanged: the jobs exist if and only if the transaction commits.

The block is an ``atomic(savepoint=False)`` block: it opens a transaction if
there is none and adds no savepoint round trips if there is one. As with any
``atomic(savepoint=False)`` block, an exception raised out of it dooms the
whole transaction, so nothing the block emitted can commit without the rest.
Emits that a batch does not buffer are written at once, as outside a batch:
those on another database, and those inside a nested ``atomic()`` block with a
savepoint, whose rollback must be able to drop them.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from critical_path.outbox.write import Emit

_buffers: ContextVar[dict[str, Buffer] | None] = ContextVar("critical_path_batch", default=None)


class Buffer(list["Emit"]):
    """The emits a batch holds for its database, and the savepoints open when it began."""

    def __init__(self, savepoint_ids: list[str]) -> None:
        super().__init__()
        self.savepoint_ids = savepoint_ids


def buffer_for(database: str, connection: BaseDatabaseWrapper) -> Buffer | None:
    """The buffer an emit on ``database`` joins now, or ``None`` if it must be written at once."""
    buffers = _buffers.get()
    if buffers is None:
        return None
    buffer = buffers.get(database)
    if buffer is None or _savepoints(connection) != buffer.savepoint_ids:
        return None
    return buffer


def _savepoints(connection: BaseDatabaseWrapper) -> list[str]:
    # Django records a nested atomic(savepoint=False) block as None: it has no savepoint to roll back to.
    return [sid for sid in connection.savepoint_ids if sid is not None]


class batch:
    """Write the side effects emitted in this block with one INSERT when it exits.

    ``with critical_path.batch(): ...`` works inside or outside
    ``transaction.atomic()``. Inside the block, ``after_commit()`` returns the
    job unsaved (``pk`` is ``None``); its fields are filled in when the block
    exits. ``using`` names the database whose emits are batched (by default the
    one ``router.db_for_write(Job)`` gives, as for emits). A batch nested in
    another on the same database joins it.
    """

    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def __enter__(self) -> None:
        # Inside, as the root package imports this module: importing critical_path imports nothing of Django's,
        # and models only once INSTALLED_APPS has loaded.
        from django.db import connections, router, transaction

        from critical_path.models import Job

        database = self.using or router.db_for_write(Job)
        self._database = database
        self._atomic = transaction.atomic(using=database, savepoint=False)
        self._atomic.__enter__()
        buffers = _buffers.get() or {}
        self._buffer: Buffer | None = None
        if database not in buffers:  # the outermost batch on this database owns the buffer
            self._buffer = Buffer(_savepoints(connections[database]))
            self._token = _buffers.set({**buffers, database: self._buffer})

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        from django.db import connections

        try:
            if self._buffer is not None:
                _buffers.reset(self._token)
                # On an exception, or once Django has marked the transaction for rollback, the buffered
                # jobs cannot commit: they are dropped, and Django's atomic() rolls back the rest.
                if exc_type is None and self._buffer and not connections[self._database].needs_rollback:
                    # Inside, as the root package imports this module while INSTALLED_APPS loads, and write.py
                    # imports models.
                    from critical_path.outbox.write import write

                    write(self._database, self._buffer)
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, traceback)
