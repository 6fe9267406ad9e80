"""Declarative wiring from Django signals to side effects.

``bridge(post_save, sender="shop.Order", effect=send_receipt, kwargs={"order_id": "pk"})``
connects a receiver that emits the side effect each time the signal is sent.
Model signals are sent inside ``save()`` and ``delete()``, so the job is written
in the same transaction as the row and shares its fate: a rolled-back save
leaves no job. Wiring mistakes are reported by system checks
(``critical_path.E004`` to ``E006``) when the project starts, not at the first save.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.checks import CheckMessage, Error
from django.db import models
from django.db.models import signals as model_signals
from django.dispatch import Signal

from critical_path.outbox.effects import SideEffect

if TYPE_CHECKING:
    from critical_path.models import Job

#: Signals whose sender is a model class.
MODEL_SIGNALS = (
    model_signals.pre_init, model_signals.post_init, model_signals.pre_save, model_signals.post_save,
    model_signals.pre_delete, model_signals.post_delete, model_signals.m2m_changed,
)  # fmt: skip
#: Model fields whose values come back from JSON unchanged, so ``kwargs={"param": "field"}`` may name them.
JSON_FIELD_TYPES = frozenset(
    {
        "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
        "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField", "CharField", "TextField",
        "SlugField", "BooleanField", "FloatField", "JSONField",
    }
)  # fmt: skip

#: What ``when`` and a ``kwargs`` callable receive: the signal's keyword arguments, ``sender`` included.
SignalPredicate = Callable[..., bool]
SignalArguments = Callable[..., Mapping[str, Any]]

_bridges: list[Bridge] = []


class Bridge:
    """One signal wired to one side effect. Made by ``bridge()``; checked by ``errors()``."""

    def __init__(
        self,
        signal: Signal,
        *,
        sender: Any,
        effect: Any,
        when: SignalPredicate | None,
        kwargs: Mapping[str, str] | SignalArguments | None,
        origin: str,
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.effect = effect
        self.when = when
        self.kwargs = kwargs
        self.origin = origin
        self.model = self._resolve_model()
        self.connected = False

    def __repr__(self) -> str:
        return f"<Bridge to {getattr(self.effect, 'path', self.effect)!r} at {self.origin}>"

    def connect(self) -> None:
        """Connect the receiver, unless the sender or the effect is wrong (``errors()`` reports them)."""
        if self.connected or not isinstance(self.effect, SideEffect) or self._sender_error():
            return
        sender = self.model if self.model is not None else self.sender
        self.signal.connect(self.receive, sender=sender, weak=False)
        self.connected = True

    def disconnect(self) -> None:
        sender = self.model if self.model is not None else self.sender
        self.signal.disconnect(self.receive, sender=sender)
        self.connected = False

    def receive(self, sender: Any, **signal_kwargs: Any) -> Job | None:
        """Emit the side effect for one sending of the signal, unless ``when`` says no or the save is raw."""
        # Here, not at the top: a project's apps.py may import this module before the app registry is ready.
        from critical_path.models import job_databases

        if signal_kwargs.get("raw"):  # loaddata: fixtures are not events
            return None
        if self.when is not None and not self.when(sender=sender, **signal_kwargs):
            return None
        if self.kwargs is None:
            arguments: Mapping[str, Any] = {}
        elif callable(self.kwargs):
            arguments = self.kwargs(sender=sender, **signal_kwargs)
        else:
            instance = signal_kwargs["instance"]
            arguments = {name: getattr(instance, field) for name, field in self.kwargs.items()}
        effect: SideEffect[Any, Any] = self.effect
        using = signal_kwargs.get("using")
        if using and effect.options.database is None and using in job_databases():
            effect = effect.using(database=using)  # the job joins the save's transaction
        return effect.after_commit(**arguments)

    def errors(self) -> list[CheckMessage]:
        """What is wrong with this wiring, as system check errors."""
        errors: list[CheckMessage] = []
        sender_error = self._sender_error()
        if sender_error:
            errors.append(self._error(*sender_error, id="critical_path.E004"))
        effect_error = self._effect_error()
        if effect_error:
            errors.append(self._error(*effect_error, id="critical_path.E005"))
        errors += [self._error(msg, hint, id="critical_path.E006") for msg, hint in self._arguments_errors()]
        return errors

    def _error(self, msg: str, hint: str, id: str) -> Error:
        return Error(f"The signal bridge at {self.origin}: {msg}", hint=hint, id=id)

    def _resolve_model(self) -> type[models.Model] | None:
        if isinstance(self.sender, type) and issubclass(self.sender, models.Model):
            return self.sender
        if isinstance(self.sender, str):
            from django.apps import apps

            try:
                return apps.get_model(self.sender)
            except (LookupError, ValueError):
                return None
        return None

    def _sender_error(self) -> tuple[str, str] | None:
        if self.model is not None:
            return None
        if isinstance(self.sender, str):
            return (
                f"sender {self.sender!r} is not an installed model.",
                "Name the model as 'app_label.ModelName' (its app in INSTALLED_APPS), or pass the model class.",
            )
        if self.signal in MODEL_SIGNALS:
            return (
                f"sender {self.sender!r} is not a model class, and this signal's senders are models.",
                "Pass the model class, or its 'app_label.ModelName'.",
            )
        return None

    def _effect_error(self) -> tuple[str, str] | None:
        if isinstance(self.effect, SideEffect):
            return None
        if getattr(self.effect, "__name__", "") == "<lambda>":
            return (
                "effect is a lambda, which a worker cannot import.",
                "Declare a module-level function with @side_effect and pass it as effect=.",
            )
        return (
            f"effect {self.effect!r} is not a side effect.",
            "Decorate the function with @side_effect (critical_path.side_effect) and pass it as effect=.",
        )

    def _arguments_errors(self) -> list[tuple[str, str]]:
        errors = []
        if self.when is not None and not callable(self.when):
            errors.append((f"when={self.when!r} is not callable.", "Pass a function of the signal's arguments."))
        if self.kwargs is None or callable(self.kwargs):
            names: list[str] = []
        elif isinstance(self.kwargs, Mapping):
            names = list(self.kwargs)
            errors += self._field_errors(self.kwargs)
        else:
            return [
                *errors,
                (
                    f"kwargs={self.kwargs!r} is neither a mapping nor callable.",
                    "Pass {'parameter': 'field_name'} or a function of the signal's arguments returning a dict.",
                ),
            ]
        if isinstance(self.effect, SideEffect) and not callable(self.kwargs):
            try:
                self.effect.signature.bind(**dict.fromkeys(names))
            except TypeError as exc:
                errors.append(
                    (
                        f"the arguments {names} do not fit {self.effect.path}{self.effect.signature}: {exc}.",
                        "Map each parameter the side effect needs to a field: kwargs={'parameter': 'field_name'}.",
                    )
                )
        return errors

    def _field_errors(self, mapping: Mapping[str, str]) -> list[tuple[str, str]]:
        if self.signal not in MODEL_SIGNALS or self.signal in (model_signals.pre_init, model_signals.m2m_changed):
            return [
                (
                    "kwargs={'parameter': 'field'} reads the signal's instance, which this signal does not send.",
                    "Pass a function of the signal's arguments returning a dict as kwargs=.",
                )
            ]
        if self.model is None:
            return []
        errors = []
        for parameter, name in mapping.items():
            field = _field(self.model, name)
            label = self.model._meta.label
            if field is None:
                errors.append(
                    (
                        f"kwargs[{parameter!r}] names {name!r}, which is not a field of {label}.",
                        f"Name a concrete field of {label} (or 'pk', or a foreign key's '<name>_id').",
                    )
                )
            elif _field_type(field, name) not in JSON_FIELD_TYPES:
                errors.append(
                    (
                        f"kwargs[{parameter!r}] names {label}.{name}, a {_field_type(field, name)}, whose values "
                        "do not come back from JSON unchanged.",
                        "Pass a function as kwargs= that converts it (an id, a str, an ISO date), or pass the id.",
                    )
                )
        return errors


def bridge(
    signal: Signal,
    *,
    sender: type[models.Model] | str | Any = None,
    effect: SideEffect[..., Any],
    when: SignalPredicate | None = None,
    kwargs: Mapping[str, str] | SignalArguments | None = None,
) -> Bridge:
    """Emit ``effect`` each time ``signal`` is sent by ``sender``; call it from ``AppConfig.ready()``.

    ``sender``: a model class or ``"app_label.ModelName"`` for model signals, any
    sender (or ``None``, all) for a project's own signals. ``when``: called with
    the signal's keyword arguments (``sender`` included); emit only if true.
    ``kwargs``: the side effect's keyword arguments, either ``{"parameter":
    "field"}`` read from the signal's ``instance`` (checked at start-up), or a
    function of the signal's keyword arguments returning them. Saves of
    fixtures (``raw=True``) emit nothing. The job is written on the save's
    database when jobs live there, so it commits or rolls back with the save.
    """
    frame = sys._getframe(1)
    origin = f"{_relative(frame.f_code.co_filename)}:{frame.f_lineno}"
    made = Bridge(signal, sender=sender, effect=effect, when=when, kwargs=kwargs, origin=origin)
    _bridges.append(made)
    made.connect()
    return made


def registered() -> list[Bridge]:
    """The bridges made so far in this process."""
    return list(_bridges)


def unregister(made: Bridge) -> None:
    """Disconnect a bridge and forget it (tests)."""
    made.disconnect()
    _bridges.remove(made)


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any] | None:
    if name == "pk":
        return model._meta.pk
    for field in model._meta.concrete_fields:
        if name in (field.name, field.attname):
            return field
    return None


def _field_type(field: models.Field[Any, Any], name: str) -> str:
    target = getattr(field, "target_field", None)
    if field.is_relation and name == field.attname and target is not None:  # owner_id: the target's type
        return _field_type(target, target.attname)
    internal = field.get_internal_type()
    return "IntegerField" if internal in ("AutoField", "BigAutoField", "SmallAutoField") else internal


def _relative(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if relative.startswith("..") else relative
