"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright's sync API runs an event loop in the test's thread, so Django's ORM
calls in these tests need ``DJANGO_ALLOW_ASYNC_UNSAFE``; it is set here, for
browser tests only. The browser lives for one module: its event loop and that
variable must not outlast the browser tests (``async_to_sync`` refuses to run
beside a running loop, and the variable would hide async-safety errors).
"""

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CRITICAL_PATH_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        message = f"Chromium not found at {CHROMIUM}: apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else None
    if sync_api is None:
        from playwright import sync_api
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def screenshots(tmp_path):
    """Where screenshots go: a temporary directory, or CRITICAL_PATH_SCREENSHOT_DIR (the docs' refresh)."""
    folder = os.environ.get("CRITICAL_PATH_SCREENSHOT_DIR")
    return os.path.abspath(folder) if folder else tmp_path


def log_in(page, live_server, username, password="pw"):
    page.goto(live_server.url + "/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
