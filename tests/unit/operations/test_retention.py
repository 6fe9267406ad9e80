"""Pruning against concurrent operators: a row moved out of the pruned statuses while the prune waits is kept."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from critical_path.models import Job
from critical_path.operations import retention
from tests.factories import make_job
from tests.support.locks import second_connection, wait_until_blocked

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_dead_letter_replayed_while_the_prune_waits_on_its_lock_is_not_deleted():
    if connection.vendor != "postgresql":
        pytest.skip("a DELETE waiting on a replay's row lock: PostgreSQL's row locks")
    job = make_job(Job.Status.DEAD, finished_at=timezone.now() - timedelta(days=40))
    outcome = {}

    def prune():
        try:
            outcome["deleted"] = retention.prune(timedelta(days=30), statuses=[Job.Status.DEAD], using="default")
        finally:
            connections.close_all()

    with second_connection() as replay:  # the replay's batch: lock the dead letter, move it back to pending
        replay.execute("SELECT id FROM critical_path_job WHERE id = %s FOR UPDATE", [job.pk])
        replay.execute(
            "UPDATE critical_path_job SET status = 'pending', finished_at = NULL, attempts = 0 WHERE id = %s", [job.pk]
        )
        pruning = threading.Thread(target=prune)
        pruning.start()
        wait_until_blocked()
        replay.commit()
    pruning.join(30)

    assert outcome == {"deleted": 0}
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING
