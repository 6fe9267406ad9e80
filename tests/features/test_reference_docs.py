"""The reference pages list exactly what the code has: settings and their defaults, check ids, signals."""

import ast
import re
from pathlib import Path

from django.dispatch import Signal

import critical_path
from critical_path import signals
from critical_path.conf import Settings, settings
from tests.helpers import ROOT

PACKAGE = Path(critical_path.__file__).resolve().parent
REF = ROOT / "docs" / "ref"


def settings_table():
    """``{name: (default, meaning)}`` from the table rows of docs/ref/settings.rst."""
    rows = re.findall(
        r"^``CRITICAL_PATH_([A-Z_]+)``\s+(``[^`]*``|see right)\s+(.+)$", (REF / "settings.rst").read_text(), re.M
    )
    table = {name: (default, meaning) for name, default, meaning in rows}
    assert len(table) == len(rows), "a setting is listed twice"
    return table


def rendered(value):
    if isinstance(value, float):
        return f"``{value:g}``"
    return f"``{value}``"


def test_the_settings_page_lists_every_setting_and_no_other():
    assert set(settings_table()) == set(settings.names())


def test_the_settings_page_gives_each_default():
    for name, (default, meaning) in settings_table().items():
        value = getattr(Settings, name)
        if default == "see right":
            values = value if isinstance(value, tuple) else (value,)
            missing = [item for item in values if f"``{item}``" not in meaning]
            assert not missing, f"{name}: the meaning does not list the default's {missing}"
        else:
            assert default == rendered(value), f"{name}: documented {default}, the default is {value!r}"


def emitted_check_ids():
    ids = set()
    for path in PACKAGE.rglob("*.py"):
        ids.update(re.findall(r"""id=["'](critical_path\.[EW]\d{3})["']""", path.read_text()))
    return ids


def test_the_checks_page_lists_every_check_id_the_code_emits():
    documented = re.findall(r"^``(critical_path\.[EW]\d{3})``$", (REF / "checks.rst").read_text(), re.M)
    assert len(documented) == len(set(documented)), "a check id is documented twice"
    assert emitted_check_ids() and set(documented) == emitted_check_ids()


def sent_arguments():
    """``{signal name: its keyword arguments besides sender}`` from every ``signals.<name>.send(...)`` call."""
    sent: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            is_signal = isinstance(target, ast.Attribute) and ast.unparse(target.value) == "signals"
            if node.func.attr == "send" and is_signal:
                sent.setdefault(target.attr, set()).update(kw.arg for kw in node.keywords if kw.arg != "sender")
    return sent


def test_the_signals_page_lists_each_signal_with_the_arguments_it_is_sent_with():
    declared = {name for name, value in vars(signals).items() if isinstance(value, Signal)}
    documented = {
        name: set(filter(None, (argument.strip() for argument in arguments.split(","))))
        for name, arguments in re.findall(r"^``(\w+)\(([^)]*)\)``$", (REF / "signals.rst").read_text(), re.M)
    }
    assert set(documented) == declared
    assert documented == sent_arguments()
