"""critical_path.bridge: signals wired to side effects, emitted in the save's transaction, checked at start-up."""

import sys

import pytest
from django.core.checks import Error
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal

from critical_path import bridge as bridges
from critical_path import checks
from critical_path.bridge import bridge
from critical_path.models import Job
from critical_path.testing import capture_side_effects
from tests.effects import note
from tests.testapp.models import Account, Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

created_only = {"when": lambda instance, created, **kwargs: created}


class Rollback(Exception):
    pass


@pytest.fixture(autouse=True)
def _unregister():
    """The bridges a test makes are disconnected and forgotten after it."""
    before = bridges.registered()
    yield
    for made in bridges.registered():
        if made not in before:
            bridges.unregister(made)


def test_a_save_emits_the_side_effect_in_its_transaction():
    bridge(post_save, sender="testapp.Account", effect=note, kwargs={"text": "email"}, **created_only)

    with capture_side_effects() as emitted, transaction.atomic():
        account = Account.objects.create(email="ada@example.com")
        account.save()  # not created: ``when`` says no
    with pytest.raises(Rollback), transaction.atomic():
        Account.objects.create(email="rolled@example.com")
        raise Rollback

    emitted.assert_emitted(note, "ada@example.com")
    assert list(Job.objects.values_list("args", "kwargs")) == [([], {"text": "ada@example.com"})]


def test_fixtures_loaded_raw_emit_nothing():
    bridge(post_save, sender=Account, effect=note, kwargs={"text": "email"})

    post_save.send(sender=Account, instance=Account(email="x@example.com"), created=True, raw=True, using="default")

    assert not Job.objects.exists()


def test_the_job_is_written_on_the_saves_database():
    bridge(post_save, sender=Account, effect=note, kwargs={"text": "email"}, **created_only)

    with transaction.atomic(using="other"):
        Account.objects.using("other").create(email="ada@example.com")

    assert (Job.objects.count(), Job.objects.using("other").count()) == (0, 1)


def test_a_projects_own_signal_with_computed_arguments():
    shipped = Signal()
    bridge(shipped, effect=note, kwargs=lambda order, **kwargs: {"text": f"order {order} shipped", "tag": "ship"})

    with capture_side_effects() as emitted:
        shipped.send(sender=None, order=7)

    emitted.assert_emitted_once(note, "order 7 shipped", tag="ship")


def test_a_sound_bridge_passes_the_check_and_knows_where_it_was_made():
    made = bridge(post_save, sender=Account, effect=note, kwargs={"text": "email", "tag": "pk"})
    line = sys._getframe().f_lineno - 1

    assert checks.check_bridges() == []
    assert made.connected
    assert made.origin == f"tests/unit/test_bridge.py:{line}"


def test_an_unknown_model_label_is_an_error_and_nothing_is_connected():
    made = bridge(post_save, sender="testapp.Acount", effect=note, kwargs={"text": "email"})
    origin = made.origin

    assert not made.connected
    assert checks.check_bridges() == [
        Error(
            f"The signal bridge at {origin}: sender 'testapp.Acount' is not an installed model.",
            hint="Name the model as 'app_label.ModelName' (its app in INSTALLED_APPS), or pass the model class.",
            id="critical_path.E004",
        )
    ]


def test_a_model_signal_from_something_else_than_a_model_is_an_error():
    origin = bridge(post_save, sender=object, effect=note, kwargs=lambda **kwargs: {"text": ""}).origin

    assert checks.check_bridges() == [
        Error(
            f"The signal bridge at {origin}: sender <class 'object'> is not a model class, and this signal's "
            "senders are models.",
            hint="Pass the model class, or its 'app_label.ModelName'.",
            id="critical_path.E004",
        )
    ]


def test_an_effect_that_is_no_side_effect_is_an_error():
    origin = bridge(post_save, sender=Account, effect=print).origin

    assert checks.check_bridges() == [
        Error(
            f"The signal bridge at {origin}: effect <built-in function print> is not a side effect.",
            hint="Decorate the function with @side_effect (critical_path.side_effect) and pass it as effect=.",
            id="critical_path.E005",
        )
    ]


def test_a_lambda_as_effect_is_an_error():
    made = bridge(post_save, sender=Account, effect=lambda **kwargs: None, kwargs={"text": "email"})
    origin = made.origin

    assert not made.connected
    assert checks.check_bridges() == [
        Error(
            f"The signal bridge at {origin}: effect is a lambda, which a worker cannot import.",
            hint="Declare a module-level function with @side_effect and pass it as effect=.",
            id="critical_path.E005",
        )
    ]


def test_a_field_whose_values_are_not_json_is_an_error():
    origin = bridge(post_save, sender=Ledger, effect=note, kwargs={"text": "created_at"}).origin

    assert checks.check_bridges() == [
        Error(
            f"The signal bridge at {origin}: kwargs['text'] names testapp.Ledger.created_at, a DateTimeField, "
            "whose values do not come back from JSON unchanged.",
            hint="Pass a function as kwargs= that converts it (an id, a str, an ISO date), or pass the id.",
            id="critical_path.E006",
        )
    ]


def test_an_unknown_field_and_arguments_that_do_not_fit_are_errors():
    origin = bridge(post_save, sender=Account, effect=note, kwargs={"body": "mail"}, when=True).origin

    assert [(error.msg, error.id) for error in checks.check_bridges()] == [
        (f"The signal bridge at {origin}: when=True is not callable.", "critical_path.E006"),
        (
            f"The signal bridge at {origin}: kwargs['body'] names 'mail', which is not a field of testapp.Account.",
            "critical_path.E006",
        ),
        (
            f"The signal bridge at {origin}: the arguments ['body'] do not fit tests.effects.note(text, *, tag=None): "
            "missing a required argument: 'text'.",
            "critical_path.E006",
        ),
    ]


def test_a_field_mapping_on_a_signal_without_an_instance_is_an_error():
    origin = bridge(Signal(), effect=note, kwargs={"text": "email"}).origin

    assert [error.msg for error in checks.check_bridges()] == [
        f"The signal bridge at {origin}: kwargs={{'parameter': 'field'}} reads the signal's instance, which this "
        "signal does not send."
    ]
