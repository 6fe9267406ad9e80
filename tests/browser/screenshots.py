"""Refresh the admin docs' screenshots: ``python -m tests.browser.screenshots`` writes docs/_static/admin-*.png."""

import os
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "docs" / "_static"
    target.mkdir(exist_ok=True)
    os.environ["CRITICAL_PATH_SCREENSHOT_DIR"] = str(target)
    sys.exit(pytest.main(["-q", "tests/browser/test_admin.py::test_screenshots_of_the_admin"]))
