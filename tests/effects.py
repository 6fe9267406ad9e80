"""Side effects the tests emit; each records its runs in the Ledger."""

import os
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.db.backends.signals import connection_created

from critical_path import PermanentFailure, current_job, side_effect
from tests.testapp.models import Ledger


def record(name, value=None):
    job = current_job()
    Ledger.objects.using(job.database).create(
        name=name, idempotency_key=job.idempotency_key, attempt=job.attempt, value=value
    )


#: Database connections this process has opened (Django's ``connection_created``), for ``count_connections``.
opened_connections = 0


def _count_connection(**kwargs):
    global opened_connections
    opened_connections += 1


connection_created.connect(_count_connection, dispatch_uid="tests.effects.count_connections")


@side_effect
def count_connections():
    """Records its process and how many connections that process had opened when it ran."""
    record("count_connections", {"pid": os.getpid(), "opened": opened_connections})


@side_effect
def note(text, *, tag=None):
    record("note", {"text": text, "tag": tag})


@side_effect(max_attempts=3, time_limit=30, priority=5)
def flaky(fail_times):
    """Fails on its first ``fail_times`` attempts, then succeeds."""
    record("flaky")
    if current_job().attempt <= fail_times:
        raise RuntimeError(f"flaky failure on attempt {current_job().attempt}")


@side_effect(max_attempts=2)
def always_fails():
    record("always_fails")
    raise ValueError("downstream is down")


@side_effect(max_attempts=5)
def permanent():
    record("permanent")
    raise PermanentFailure("the address does not exist")


@side_effect
def chain(text):
    """Emits another side effect from inside a running one."""
    record("chain")
    note.after_commit(text)


@side_effect(max_attempts=1)
def overruns_and_is_replayed(outcome):
    """While it runs its lease expires: the relay dead-letters the job, it is replayed and claimed again (attempt 1)."""
    from datetime import timedelta

    from critical_path.models import Job, now_plus
    from critical_path.outbox import transitions
    from critical_path.store import compiled
    from critical_path.worker import outcomes

    job = current_job()
    jobs = Job.objects.using(job.database).filter(pk=job.id)
    jobs.update(lease_expires_at=now_plus(-timedelta(seconds=1)))
    [expired] = jobs.lease_expired()
    assert outcomes.rescue(expired) == outcomes.Outcome.DEAD
    assert transitions.replay(jobs) == 1
    assert compiled.claim(job.id, timedelta(minutes=5), using=job.database) is not None
    if outcome == "raise":
        raise RuntimeError("too late")


@side_effect
def outlives_its_lease(outcome):
    """While it runs, its lease expires and another worker claims the job (attempt and claim + 1)."""
    from django.db.models import F

    from critical_path.models import Job

    job = current_job()
    Job.objects.using(job.database).filter(pk=job.id).update(attempts=F("attempts") + 1, claims=F("claims") + 1)
    if outcome == "raise":
        raise RuntimeError("too late")


@side_effect
def forever(depth):
    """Emits itself again every time it runs: run_pending_jobs must stop it."""
    record("forever", depth)
    forever.after_commit(depth + 1)


@side_effect
def records_its_lease():
    """Records how long its claim holds the job: the lease."""
    from critical_path.models import Job

    job = Job.objects.using(current_job().database).get(pk=current_job().id)
    record("lease", (job.lease_expires_at - job.started_at).total_seconds())


@side_effect(max_attempts=2, time_limit=30, soft_time_limit=2)
def stopped_by_its_soft_limit():
    """Raises what a prefork worker raises inside a function at its soft time limit."""
    record("stopped_by_its_soft_limit")
    raise SoftTimeLimitExceeded()


@side_effect(soft_time_limit=240)
def soft_limit_only():
    """A soft time limit and the default hard one (``CRITICAL_PATH_TIME_LIMIT``)."""


@side_effect(max_attempts=2, time_limit=10, soft_time_limit=1)
def sleeps_past_its_soft_limit(attempts, seconds):
    """Sleeps ``seconds`` (past its soft limit) on its first ``attempts`` attempts, then returns at once."""
    record("sleeps_past_its_soft_limit")
    if current_job().attempt <= attempts:
        time.sleep(seconds)


@side_effect(atomic=True, max_attempts=2)
def writes_atomically(outcome):
    """Writes a row and emits a side effect on its job's database, then returns, raises or loses its lease.

    It loses its lease as a rescue and a newer claim would take it (attempts + 1),
    but inside its own transaction, the only writer SQLite allows meanwhile; the
    rollback undoes that too.
    """
    from django.db import connections
    from django.db.models import F

    from critical_path.models import Job

    job = current_job()
    record("writes_atomically", {"in_atomic_block": connections[job.database].in_atomic_block})
    note.using(database=job.database).after_commit("emitted by writes_atomically")
    if outcome == "raise":
        raise RuntimeError("failed after its writes")
    if outcome == "lose lease":
        Job.objects.using(job.database).filter(pk=job.id).update(attempts=F("attempts") + 1, claims=F("claims") + 1)


@side_effect(version=3, max_attempts=2)
def greets(name, *, greeting):
    """Version 1 took ``(first_name, last_name)``, version 2 ``(name)``; version 3 added ``greeting``."""
    record("greets", {"name": name, "greeting": greeting})


@greets.upgrade(from_version=1)
def greets_from_1(args, kwargs):
    first_name, last_name = args
    return [f"{first_name} {last_name}"], kwargs


@greets.upgrade(from_version=2)
def greets_from_2(args, kwargs):
    return args, {**kwargs, "greeting": "Hello"}


@side_effect(version=3)
def greets_without_upgrades(name):
    """At version 3 with an upgrade from 2 but none from 1."""
    record("greets_without_upgrades", {"name": name})


@greets_without_upgrades.upgrade(from_version=2)
def greets_without_upgrades_from_2(args, kwargs):
    return args, kwargs


@side_effect
def mails(subject):
    from django.core.mail import EmailMessage

    EmailMessage(subject, "Body", to=["a@example.com"]).send()


@side_effect(coalesce=True)
def recount(scope, *, total=None):
    """Coalesces: a burst of equal emits runs a few times, the newest arguments last."""
    record("recount", {"scope": scope, "total": total})


@side_effect(rate="2/m", max_attempts=2)
def throttled(text):
    """Two runs a minute, across all workers."""
    record("throttled", text)
