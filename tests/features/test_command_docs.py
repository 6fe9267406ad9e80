"""Each command's docs page lists exactly the options its parser has (beyond those every command has)."""

import re

import pytest
from django.core.management import BaseCommand, load_command_class

from tests.helpers import ROOT

DOCS = ROOT / "docs"
PAGES = {
    "replay_dead_letters": "howto/replay.rst",
    "prune_outbox": "howto/prune.rst",
    "outbox_stats": "howto/stats.rst",
    "outbox_health": "topics/observability.rst",
}


def long_options(command):
    return {name for name in command.create_parser("manage.py", "x")._option_string_actions if name.startswith("--")}


@pytest.mark.parametrize(("command", "page"), PAGES.items())
def test_documented_options_match_the_parser(command, page):
    options = long_options(load_command_class("critical_path", command)) - long_options(BaseCommand())
    documented = set(re.findall(r"``(--[a-z][a-z-]*)", (DOCS / page).read_text()))
    assert documented == options
