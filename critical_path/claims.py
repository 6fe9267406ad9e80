"""The claim of one job, compiled once per database: the worker's hottest statement.

``JobQuerySet.claim`` is one UPDATE whose CASE and EXISTS expressions (ordering
keys, coalescing) take Django's ORM milliseconds of CPU to compile, far more
than the database takes to run them. The statement only differs from job to
job by the job's id and its lease, so it is compiled once, from the ORM's own
definition, with stand-ins for those two, which each call replaces.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

_ID = -7_707_707_707  # no job has it: it marks the id's place among the parameters
_LEASE = timedelta(days=7707, microseconds=7)

_compiled: dict[str, tuple[str, list[Any], list[int], list[tuple[int, Any]]]] = {}


def claim(job_id: int, lease: timedelta, *, using: str) -> int:
    """``Job.objects.using(using).filter(pk=job_id).claim(lease)``, compiled once: how many rows moved (0 or 1)."""
    from django.db import connections

    sql, template, id_at, lease_at = _compiled.get(using) or _compile(using)
    params = list(template)
    for index in id_at:
        params[index] = job_id
    for index, form in lease_at:
        params[index] = form(lease)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _compile(using: str) -> tuple[str, list[Any], list[int], list[tuple[int, Any]]]:
    from django.db.models import sql as orm_sql
    from django.utils.duration import duration_microseconds

    from critical_path.models import Job, claim_values

    query: Any = Job.objects.using(using).filter(pk=_ID).claimable().query.chain(orm_sql.UpdateQuery)
    query.add_update_values(claim_values(_LEASE))
    sql, params = query.get_compiler(using).as_sql()
    # A database with an interval type takes the lease as a timedelta; SQLite, as microseconds.
    forms = [(_LEASE, lambda lease: lease), (duration_microseconds(_LEASE), duration_microseconds)]
    id_at = [index for index, value in enumerate(params) if value == _ID]
    lease_at = [(index, form) for index, value in enumerate(params) for stand_in, form in forms if value == stand_in]
    if len(id_at) != 1 or not lease_at:
        raise RuntimeError(f"cannot compile the claim for {using!r}: the id or the lease is not a parameter of {sql}")
    compiled = (sql, list(params), id_at, lease_at)
    _compiled[using] = compiled
    return compiled
