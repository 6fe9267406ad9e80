"""Payload versions: jobs emitted by older code run through the upgrades; newer ones wait; gaps dead-letter."""

import pytest
from django.db import transaction

from critical_path import InvalidOption, side_effect
from critical_path.models import Job
from critical_path.outbox import transitions
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome
from tests.effects import greets, note
from tests.factories import make_job
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_a_job_stores_the_version_it_was_emitted_with():
    with transaction.atomic():
        job = greets.after_commit("Ada Lovelace", greeting="Hi")
        plain = note.after_commit("x")
    assert (job.version, plain.version) == (3, 1)
    assert list(Job.objects.order_by("pk").values_list("version", flat=True)) == [3, 1]
    assert delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED
    assert Ledger.objects.get().value == {"name": "Ada Lovelace", "greeting": "Hi"}


@pytest.mark.parametrize(
    ("version", "args", "kwargs"),
    [(1, ["Ada", "Lovelace"], {}), (2, ["Ada Lovelace"], {}), (3, ["Ada Lovelace"], {"greeting": "Hello"})],
)
def test_older_payloads_are_upgraded_step_by_step_and_kept_as_stored(version, args, kwargs):
    job = make_job(effect="tests.effects.greets", version=version, args=args, kwargs=kwargs)
    assert delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED
    assert Ledger.objects.get().value == {"name": "Ada Lovelace", "greeting": "Hello"}
    job.refresh_from_db()
    assert (job.version, job.args, job.kwargs) == (version, args, kwargs)


def test_a_replayed_dead_letter_from_last_months_code_runs_upgraded():
    job = make_job(Job.Status.DEAD, effect="tests.effects.greets", version=1, args=["Ada", "Lovelace"], attempts=2)
    assert transitions.replay([job.pk]) == 1
    assert delivery.deliver(job.pk, "default") == Outcome.SUCCEEDED
    assert Ledger.objects.get().value == {"name": "Ada Lovelace", "greeting": "Hello"}


def test_a_payload_newer_than_the_code_fails_and_is_retried():
    job = make_job(effect="tests.effects.greets", version=4, args=["Ada"], kwargs={"greeting": "Hi", "lang": "en"})
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error_history[0]["error"] == (
        f"critical_path.exceptions.PayloadTooNew: job #{job.pk} holds a version 4 payload of tests.effects.greets, "
        "and this worker runs its version 3: emitted by newer code. It is retried; it runs once every worker runs "
        "version 4 or later (finish the deploy), or dead-letters when its attempts run out (replay it then)."
    )
    assert not Ledger.objects.exists()


def test_a_missing_upgrade_dead_letters_the_job_naming_the_versions():
    job = make_job(effect="tests.effects.greets_without_upgrades", version=1, args=["Ada"])
    assert delivery.deliver(job.pk, "default") == Outcome.DEAD
    job.refresh_from_db()
    assert job.error_history[0]["error"] == (
        f"critical_path.exceptions.PayloadNotUpgradable: job #{job.pk} holds a version 1 payload of "
        "tests.effects.greets_without_upgrades, which is at version 3, and nothing upgrades version 1 to 2. "
        "Declare @greets_without_upgrades.upgrade(from_version=1) and replay the job, or discard it."
    )


def test_an_upgraded_payload_that_does_not_fit_the_signature_dead_letters_the_job():
    job = make_job(effect="tests.effects.greets", version=2, args=["Ada", "Lovelace"])  # a version 1 shape
    assert delivery.deliver(job.pk, "default") == Outcome.DEAD
    job.refresh_from_db()
    assert job.last_error.endswith(
        f"critical_path.exceptions.PayloadNotUpgradable: job #{job.pk}'s version 2 payload, upgraded to version 3, "
        "does not fit tests.effects.greets(name, *, greeting): too many positional arguments "
        "(args=['Ada', 'Lovelace'], kwargs={'greeting': 'Hello'}). Fix the upgrades and replay the job."
    )


@pytest.mark.parametrize(
    ("from_version", "message"),
    [
        (0, r"from_version must be an int from 1 to 2 \(tests.effects.greets is at version 3\); got 0"),
        (3, "from_version must be an int from 1 to 2"),
        (1, "tests.effects.greets already has an upgrade from version 1"),
    ],
)
def test_invalid_upgrades_are_refused(from_version, message):
    with pytest.raises(InvalidOption, match=message):
        greets.upgrade(from_version=from_version)


def test_version_must_be_a_positive_int():
    def effect():
        pass

    effect.__qualname__ = "effect"
    with pytest.raises(InvalidOption, match="version must be a positive int; got 0"):
        side_effect(version=0)(effect)
