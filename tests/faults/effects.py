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
