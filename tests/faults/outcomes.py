"""What a scenario checks at its end: where every job got to, and how many times each side effect ran."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.db.models import Count

from critical_path.models import Job
from tests.helpers import wait_for
from tests.testapp.models import Ledger


def runs_per_key(name: str | None = None, using: str = "default") -> dict[str, int]:
    """``{idempotency key: runs}`` from the Ledger, where every run of a test side effect is recorded."""
    rows = Ledger.objects.using(using).all()
    if name is not None:
        rows = rows.filter(name=name)
    return dict(rows.values_list("idempotency_key").annotate(runs=Count("id")).order_by())


def statuses(keys: Iterable[str], using: str = "default") -> Counter[str]:
    """How many of the jobs keyed ``keys`` are in each status (a key with no job counts as ``missing``)."""
    keys = list(keys)
    found = dict(Job.objects.using(using).filter(idempotency_key__in=keys).values_list("idempotency_key", "status"))
    return Counter(found.get(key, "missing") for key in keys)


def wait_until_all(keys: Iterable[str], status: str, timeout: float = 60.0, using: str = "default") -> None:
    """Poll until every job keyed ``keys`` is in ``status``; the failure message says where they are."""
    keys = list(keys)
    try:
        wait_for(lambda: statuses(keys, using)[status] == len(keys), timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(
            f"after {timeout}s, not all {len(keys)} jobs {status}: {dict(statuses(keys, using))}"
        ) from None


def assert_ran_once_each(keys: Iterable[str], using: str = "default") -> None:
    runs = runs_per_key(using=using)
    wrong = {key: runs.get(key, 0) for key in keys if runs.get(key, 0) != 1}
    assert not wrong, f"side effects that did not run exactly once (key: runs): {wrong}"
