import datetime
import decimal
from datetime import timedelta

import pytest

from critical_path import (
    ArgumentNotSerializable,
    InvalidArguments,
    InvalidOption,
    InvalidSideEffect,
    NoCurrentJob,
    SideEffect,
    current_job,
    side_effect,
)
from critical_path.core import registry
from critical_path.exceptions import NotACeleryTask
from critical_path.models import Job
from critical_path.outbox import effects
from tests.effects import flaky, note, stopped_by_its_soft_limit


def test_bare_decorator_returns_a_side_effect_that_runs_when_called(db):
    assert isinstance(note, SideEffect)
    assert note.path == "tests.effects.note"
    with pytest.raises(NoCurrentJob):
        note("called directly")  # runs the function: it asks for its job, and there is none


def test_decorator_options_are_kept():
    assert (flaky.max_attempts, flaky.time_limit, flaky.soft_time_limit, flaky.priority) == (3, 30, None, 5)
    assert (stopped_by_its_soft_limit.time_limit, stopped_by_its_soft_limit.soft_time_limit) == (30, 2)


def test_nested_functions_and_lambdas_are_refused():
    def nested():
        pass

    with pytest.raises(InvalidSideEffect, match="module-level function"):
        side_effect(nested)
    with pytest.raises(InvalidSideEffect, match="module-level function"):
        side_effect(lambda: None)
    with pytest.raises(InvalidSideEffect, match="decorates functions"):
        side_effect(print)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a positive int"),
        ({"time_limit": -1}, "time_limit must be a positive number"),
        ({"soft_time_limit": 0}, "soft_time_limit must be a positive number"),
        ({"atomic": 1}, "atomic must be True or False"),
        ({"soft_time_limit": 30, "time_limit": 30}, "soft_time_limit must be below time_limit"),
        ({"priority": 10}, "priority must be an int from 0 to 9"),
        ({"queue": ""}, "queue must be a non-empty str"),
    ],
)
def test_invalid_decorator_options_are_refused(options, message):
    def effect():
        pass

    effect.__qualname__ = "effect"
    with pytest.raises(InvalidOption, match=message):
        side_effect(**options)(effect)


def test_an_unknown_decorator_option_is_refused_as_python_refuses_a_keyword():
    with pytest.raises(TypeError, match=r"^side_effect\(\) got an unexpected keyword argument 'retries'$"):
        side_effect(retries=3)
    with pytest.raises(TypeError, match=r"^SideEffect\(\) got an unexpected keyword argument 'retries'$"):
        SideEffect(note.func, retries=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 10}, "priority must be an int from 0 to 9"),
        ({"priority": True}, "priority must be an int"),
        ({"delay": timedelta(seconds=-1)}, "delay must be a timedelta or a number of seconds, not negative"),
        ({"delay": "soon"}, "delay must be a timedelta"),
        ({"database": "nope"}, "database 'nope' is not in settings.DATABASES"),
        ({"key": ""}, "key must be a non-empty str"),
        ({"key": "k" * 256}, "at most 255 characters"),
        ({"key": "a\x00b"}, "NUL character"),
        ({"queue": " "}, "queue must be a non-empty str"),
    ],
)
def test_invalid_using_options_are_refused(options, message):
    with pytest.raises(InvalidOption if "NUL" not in message else ArgumentNotSerializable, match=message):
        note.using(**options)


@pytest.mark.parametrize("method", ["delay", "apply_async", "delay_on_commit", "s"])
def test_celery_task_methods_say_to_use_after_commit(method):
    with pytest.raises(NotACeleryTask) as raised:
        getattr(note.using(queue="q"), method)("hi")
    assert str(raised.value) == (
        f"tests.effects.note is a side effect, not a Celery task: it has no .{method}(). Emit it inside the "
        "transaction that writes what it needs, with note.after_commit(...) (for a countdown, "
        "note.using(delay=...).after_commit(...)); a worker runs it once the transaction commits."
    )
    assert isinstance(raised.value, AttributeError) and not hasattr(note, method)


def test_other_missing_attributes_are_plain_attribute_errors():
    with pytest.raises(AttributeError, match="'SideEffect' object has no attribute 'nothing'"):
        note.nothing  # noqa: B018


def test_using_returns_a_configured_copy():
    configured = note.using(key="k", delay=5, queue="email", priority=7)
    assert configured.options.delay == timedelta(seconds=5)
    assert (configured.options.key, configured.options.queue, configured.options.priority) == ("k", "email", 7)
    assert note.options.key is None
    assert configured.path == note.path


def test_a_declared_side_effect_is_found_by_its_path():
    assert effects.resolve("tests.effects.note") is registry.resolve("tests.effects.note") is note
    assert note in registry.registered()


def test_a_path_that_holds_no_side_effect_is_a_lookup_error_that_says_so():
    with pytest.raises(LookupError, match=r"No side effect at 'tests\.effects\.renamed' in this process"):
        registry.resolve("tests.effects.renamed")
    with pytest.raises(LookupError, match=r"'tests\.helpers\.wait_for' is a function, not a side effect declared"):
        registry.resolve("tests.helpers.wait_for")


class _Adapted:
    path, time_limit, soft_time_limit = "tests.helpers.wait_for", 9.0, None


def test_adapters_turn_what_a_path_holds_into_a_side_effect(monkeypatch):
    from tests import helpers

    monkeypatch.setattr(registry, "_adapters", [])  # this test's adapters only
    adapted = _Adapted()
    registry.register_adapter(lambda value: adapted if value is helpers.wait_for else None)
    registry.register_adapter(lambda value: None)
    assert registry.resolve("tests.helpers.wait_for") is adapted
    with pytest.raises(LookupError, match="not a SideEffect: an adapter registered with"):
        effects.resolve("tests.helpers.wait_for")  # the parts above the outbox need the whole declaration


@pytest.mark.django_db
def test_signature_mismatch_is_refused_and_writes_nothing():
    with pytest.raises(InvalidArguments, match="unexpected keyword argument 'colour'"):
        note.after_commit("text", colour="red")
    with pytest.raises(InvalidArguments, match="missing a required argument"):
        note.after_commit()
    assert not Job.objects.exists()


class Thing:
    pass


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((float("nan"),), {}, r"args\[0\] is nan"),
        ((float("inf"),), {}, r"args\[0\] is inf"),
        ((), {"text": (1, 2)}, "text is a builtins.tuple"),
        ((), {"text": {1: "one"}}, "has the key 1 of type int"),
        ((), {"text": datetime.datetime(2026, 1, 1)}, "text is a datetime.datetime"),
        ((), {"text": {1, 2}}, "text is a builtins.set"),
        ((), {"text": decimal.Decimal("1.5")}, "text is a decimal.Decimal"),
        ((), {"text": Thing()}, "text is a tests.unit.outbox.test_effects.Thing"),
        (("a\x00b",), {}, r"args\[0\] contains a NUL character"),
        ((), {"text": {"k\x00": 1}}, "NUL character"),
        (([[["deep"]]],), {"tag": [float("-inf")]}, r"tag\[0\] is -inf"),
    ],
)
def test_arguments_that_would_not_round_trip_are_refused(args, kwargs, message):
    with pytest.raises(ArgumentNotSerializable, match=message):
        note.after_commit(*args, **kwargs)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_self_referencing_arguments_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ArgumentNotSerializable, match="nested deeper than 64 levels"):
        note.after_commit(loop)


def test_current_job_outside_a_job_says_where_it_works():
    with pytest.raises(NoCurrentJob, match="only available while a side effect runs"):
        current_job()
