"""Side effects of the fault-injection scenarios; like ``tests.effects``, each records its runs in the Ledger."""

import time

from critical_path import current_job, side_effect
from tests.effects import record
from tests.testapp.models import Ledger


@side_effect(max_attempts=3)
def always_down():
    """Its downstream never answers: every attempt fails."""
    record("always_down")
    raise ConnectionError("the CRM is down")


@side_effect(max_attempts=3)
def stalls(seconds):
    """Records that it started, then works for ``seconds``: long enough to kill its worker mid-function."""
    record("stalls", {"seconds": seconds})
    time.sleep(seconds)


def marked_to_fail(key):
    """Every fifth key (by its number): its side effect fails once, so a retry has to go through the relay."""
    return int(key.rsplit("-", 1)[1]) % 5 == 0


@side_effect(max_attempts=5)
def fails_first_time(text):
    """Fails its first attempt when ``text`` (the job's key) is marked; every run is recorded as failed or done."""
    if current_job().attempt == 1 and marked_to_fail(text):
        record("fails_first_time.failed")
        raise ConnectionError("the downstream timed out")
    record("fails_first_time")


@side_effect(max_attempts=5)
def takes_its_turn(text):
    """Records its start and its end (or failure), so a test sees the runs of an ordering key one after another.

    Fails its first attempt when ``text`` (the job's key) is marked, so the jobs after it wait for its retry.
    """
    job = current_job()
    record("takes_its_turn.start", {"job": job.id})
    time.sleep(0.005)  # long enough for a second run of the same key to overlap, were one let through
    if job.attempt == 1 and marked_to_fail(text):
        record("takes_its_turn.failed", {"job": job.id})
        raise ConnectionError("the downstream timed out")
    record("takes_its_turn.end", {"job": job.id})


@side_effect(max_attempts=10)
def applied_once(text):
    """Applies its effect once per idempotency key however often it runs, as a remote service given the key would.

    Every run is counted (``applied_once.run``). The effect (``applied_once``) is
    written only where the key has none yet, after a pause standing in for the
    call out: two runs of one job at the same time would both write it.
    """
    job = current_job()
    record("applied_once.run")
    effects = Ledger.objects.using(job.database).filter(name="applied_once", idempotency_key=job.idempotency_key)
    if not effects.exists():
        time.sleep(0.02)
        record("applied_once")


@side_effect(max_attempts=3, time_limit=3)
def stalls_then_delivers(seconds):
    """Records that it started, works for ``seconds``, then delivers once per key: a killed run delivers nothing.

    Idempotent as a careful side effect is: the delivery is a ``get_or_create`` on the idempotency key.
    """
    record("stalls_then_delivers")
    time.sleep(seconds)
    deliver_once("stalls_then_delivers")


@side_effect(max_attempts=5, time_limit=3)
def delivers_slowly(text):
    """Records that it started, works a little, then delivers once per key: idempotent however often it runs."""
    record("delivers_slowly", {"text": text})
    time.sleep(0.2)
    deliver_once("delivers_slowly")


def deliver_once(name):
    job = current_job()
    Ledger.objects.using(job.database).get_or_create(
        name=f"{name}.delivered", idempotency_key=job.idempotency_key, defaults={"attempt": job.attempt}
    )


@side_effect(max_attempts=3, time_limit=3, atomic=True)
def credits_atomically(amount):
    """Its only effect is a database write, committed with the job's success: it takes effect once."""
    record("credits_atomically", {"amount": amount})


@side_effect(max_attempts=3, time_limit=3)
def credits(amount):
    """The same write, committed on its own before the job's success: a crash between them writes it twice."""
    record("credits", {"amount": amount})


@side_effect(max_attempts=3, time_limit=3)
def loses_its_connection_after_the_run(text):
    """Records its run, then the database server ends its worker's session: the success meets a dropped connection.

    A second connection ends it (``pg_terminate_backend``, waiting until the session is gone), as a failover, an
    administrator or a pooler restart would between the function's return and its success's UPDATE.
    """
    import psycopg
    from django.db import connections

    job = current_job()
    record("loses_its_connection_after_the_run")
    connection = connections[job.database]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [(pid,)] = cursor.fetchall()
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], user=settings.get("USER") or None, host=settings.get("HOST") or None,
        port=settings.get("PORT") or None, password=settings.get("PASSWORD") or None, autocommit=True,
    ) as other:  # fmt: skip
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
