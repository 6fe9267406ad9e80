"""S12: a worker dies after an atomic side effect returned, before the commit: its write takes effect once.

The worker exits at crash point ``delivery.after_run``: with ``atomic=True``
that is inside the side effect's transaction, after the success UPDATE, so the
database rolls the function's write back with the success mark. The relay
rescues the job after its lease, the next attempt runs on a second worker, and
the business row exists once. The same side effect without ``atomic`` committed
its write before dying, so its second attempt writes it again.
"""

import pytest
from django.db import transaction

from critical_path.models import Job
from tests.faults.effects import credits, credits_atomically
from tests.faults.outcomes import runs_per_key, wait_until_all

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

KNOBS = {"lease_grace": 0.5, "retry_backoff": 0.1, "retry_backoff_max": 0.2}


@pytest.mark.parametrize(("effect", "rows"), [(credits_atomically, 1), (credits, 2)], ids=["atomic", "plain"])
def test_s12_worker_dies_between_return_and_commit(redis_server, launch, use_broker, effect, rows):
    # The solo pool: the crash point ends the worker itself, not a pool process its parent would replace.
    crashing = launch.worker(redis_server.url, pool="solo", crash_points=("delivery.after_run",), **KNOBS)
    launch.relay(redis_server.url, interval=0.2, **KNOBS)
    use_broker(redis_server.url)
    with transaction.atomic():
        job = effect.using(key="s12").after_commit(10)

    assert crashing.wait(timeout=30) == 70, crashing.output()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.RUNNING, 1)
    assert runs_per_key(effect.func.__name__) == ({} if effect.atomic else {"s12": 1})

    launch.worker(redis_server.url, concurrency=1, **KNOBS)
    wait_until_all(["s12"], Job.Status.SUCCEEDED, timeout=30)
    job.refresh_from_db()
    assert job.attempts == 2
    [lost] = job.error_history
    assert lost["error"].startswith("WorkerLostError: attempt 1 lost its worker"), lost
    assert runs_per_key(effect.func.__name__) == {"s12": rows}
