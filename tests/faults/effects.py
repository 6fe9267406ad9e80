"""Side effects of the fault-injection scenarios; like ``tests.effects``, each records its runs in the Ledger."""

import time

from critical_path import side_effect
from tests.effects import record


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
