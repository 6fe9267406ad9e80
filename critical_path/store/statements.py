"""ORM UPDATEs compiled once per database: the hot statements of the dispatcher and the worker.

The ORM defines each move of a job (``JobQuerySet`` and the ``*_values``
functions of ``models``); compiling one through Django's query machinery costs
more CPU than the database takes to run it, and a worker or a dispatcher runs
the same few statements all day. They differ from call to call only by a few
values (ids, an attempt, a lease), so each is compiled once per database with
unique stand-ins for those values, found again among the compiled parameters,
and replaced per call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from critical_path.models import Job

#: How a value appears among the compiled parameters, and how a real value takes that form.
Form = tuple[Any, Callable[[Any], Any]]

#: The stand-in for a job id; no job has it, nor the ids below it (a batch's stand-ins count down from here).
JOB_ID = -7_707_707_707


def same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Statement:
    """One compiled UPDATE: its SQL, its parameters with stand-ins, and where each named value goes."""

    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str, Callable[[Any], Any]], ...]
    #: With ``returning``: the updated rows' columns, their converters, and the Job attributes they fill.
    columns: tuple[str, ...] = ()
    converters: Mapping[int, Any] | None = None
    compiler: Any = None

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        params = list(self.params)
        for index, name, form in self.slots:
            params[index] = form(values[name])
        return params

    def execute(self, using: str, values: Mapping[str, Any]) -> int:
        """Run it on ``using``: how many rows it moved."""
        from django.db import connections

        with connections[using].cursor() as cursor:
            cursor.execute(self.sql, self.bind(values))
            return int(cursor.rowcount)

    def execute_returning(self, using: str, values: Mapping[str, Any]) -> list[Job]:
        """Run it on ``using`` and return the rows it moved, as they are now, as ``Job`` instances."""
        from django.db import connections

        from critical_path.models import Job

        with connections[using].cursor() as cursor:
            cursor.execute(self.sql, self.bind(values))
            rows: Any = cursor.fetchall()
        if self.converters:
            rows = self.compiler.apply_converters(rows, self.converters)
        return [Job.from_db(using, self.columns, tuple(row)) for row in rows]


_compiled: dict[Hashable, Statement] = {}


def compiled(key: Hashable, build: Callable[[], Statement]) -> Statement:
    """The statement cached under ``key``, built by ``build`` the first time."""
    statement = _compiled.get(key)
    if statement is None:
        statement = _compiled[key] = build()
    return statement


def compile_update(
    queryset: QuerySet[Any],
    values: dict[str, Any],
    stand_ins: Mapping[str, Sequence[Form]],
    *,
    returning: bool = False,
) -> Statement:
    """Compile ``queryset.update(**values)`` with named stand-ins, each found among the parameters.

    ``stand_ins`` maps a name to the forms its stand-in may take among the
    parameters (a timedelta is a timedelta on PostgreSQL, microseconds on
    SQLite): each must be found at least once, and match nothing else.
    ``returning`` adds ``RETURNING`` every column of the job (PostgreSQL,
    SQLite ≥ 3.35: ``supports_returning``).
    """
    from django.db import connections
    from django.db.models import sql as orm_sql

    using = queryset.db
    query: Any = queryset.query.chain(orm_sql.UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(using).as_sql()
    slots = []
    for name, forms in stand_ins.items():
        found = [(at, name, form) for at, value in enumerate(params) for stand_in, form in forms if value == stand_in]
        if not found:
            raise RuntimeError(f"cannot compile {sql} for {using!r}: {name} is not among its parameters")
        slots += found
    if not returning:
        return Statement(sql, tuple(params), tuple(slots))
    model = queryset.model
    fields = model._meta.concrete_fields
    quote = connections[using].ops.quote_name
    sql += " RETURNING " + ", ".join(quote(field.column) for field in fields)
    reader = model.objects.using(using).all().query.get_compiler(using)
    converters = reader.get_converters([field.get_col(model._meta.db_table) for field in fields])
    columns = tuple(field.attname for field in fields)
    return Statement(sql, tuple(params), tuple(slots), columns, converters, reader)


def supports_returning(using: str) -> bool:
    """Whether ``using`` runs ``UPDATE … RETURNING`` (PostgreSQL; SQLite from 3.35, as Django's insert does)."""
    from django.db import connections

    return bool(connections[using].features.can_return_columns_from_insert)
