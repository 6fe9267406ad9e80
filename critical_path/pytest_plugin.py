"""pytest fixtures for projects that use critical_path (registered through the ``pytest11`` entry point).

Importing this module imports nothing from Django: pytest loads plugins before
pytest-django configures settings, so each fixture imports what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from critical_path.guard import Findings
    from critical_path.testing import CapturedSideEffects, JobRuns


@pytest.fixture
def emitted_side_effects() -> Iterator[CapturedSideEffects]:
    """Every side effect the test emits, with ``assert_emitted()`` and friends (``capture_side_effects()``)."""
    from critical_path.testing import capture_side_effects

    with capture_side_effects() as emitted:
        yield emitted


@pytest.fixture
def run_pending_jobs() -> Callable[..., JobRuns]:
    """``critical_path.testing.run_pending_jobs``: deliver the outbox's due jobs inline (needs database access)."""
    from critical_path.testing import run_pending_jobs

    return run_pending_jobs


@pytest.fixture
def eager_side_effects(settings: Any) -> None:
    """Run each job in the test's process right after its transaction commits (``CRITICAL_PATH_EAGER``)."""
    settings.CRITICAL_PATH_EAGER = True


#: Where ``assert_no_inline_side_effects`` leaves its findings for ``pytest_runtest_call`` to judge.
_FINDINGS = pytest.StashKey["Findings"]()


@pytest.fixture
def assert_no_inline_side_effects(request: pytest.FixtureRequest) -> Iterator[Findings]:
    """Fail the test if it sent email, opened an outbound connection or published a Celery task in ``atomic()``.

    The failure lists each side effect with the line that did it (``critical_path.guard``). The fixture
    yields the findings so far. Work done by jobs run through critical_path's delivery is not counted.
    """
    from critical_path.guard import watch

    with watch() as findings:
        request.node.stash[_FINDINGS] = findings
        yield findings


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fail the test itself, not its teardown (an error), when ``assert_no_inline_side_effects`` found some."""
    result = yield
    findings = item.stash.get(_FINDINGS, None)
    if findings:
        pytest.fail(f"{len(findings)} side effect(s) done inline:\n{findings.report()}", pytrace=False)
    return result
