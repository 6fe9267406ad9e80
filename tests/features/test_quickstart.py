"""The quickstart and the README, followed as written in a project made by ``django-admin startproject``.

The files come from the docs themselves: each ``code-block`` of
``docs/intro/quickstart.rst`` whose caption names a file is written into the
new project (``..., at the end`` appends to it, as the page says), so editing a
snippet changes what runs here. Then, as the page says: migrate, start the web
server, a Celery worker and the relay, sign someone up through a request, and
see the job succeed in the worker's log, ``outbox_stats`` and the admin; a dead
letter is replayed; the page's pytest test, the README's and those of the
testing guide (``docs/howto/testing.rst``, captioned the same way) run in the project.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, wait_for
from tests.support.processes import end_group

QUICKSTART = ROOT / "docs" / "intro" / "quickstart.rst"
TESTING = ROOT / "docs" / "howto" / "testing.rst"
README = ROOT / "README.md"
EFFECT = "accounts.effects.send_welcome_email"


@dataclass(frozen=True)
class Snippet:
    caption: str
    name: str
    code: str

    @property
    def path(self) -> str:
        return self.caption.split(",")[0].strip()

    @property
    def appends(self) -> bool:
        return self.caption.endswith((", at the end", ", continued"))


def snippets(text: str) -> list[Snippet]:
    """The ``code-block`` directives of a reStructuredText page: caption, name and code (dedented)."""
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith(".. code-block::"):
            continue
        options: dict[str, str] = {}
        body = index + 1
        while body < len(lines) and lines[body].startswith("   :"):
            key, _, value = lines[body].strip()[1:].partition(":")
            options[key] = value.strip()
            body += 1
        code = []
        for text_line in lines[body:]:
            if text_line and not text_line.startswith("   "):
                break
            code.append(text_line[3:])
        found.append(Snippet(options.get("caption", ""), options.get("name", ""), "\n".join(code).strip() + "\n"))
    return found


def commands(text: str) -> list[str]:
    """The console commands the page shows (``$ ...`` lines)."""
    return [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("$ ")]


def readme_test() -> str:
    """The README's pytest example: its one ```python block that defines a test."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    tests = [block for block in blocks if "def test_" in block]
    assert len(tests) == 1, tests
    return tests[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Project:
    """A project in a temporary folder, its commands run with this interpreter and this checkout's critical_path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CELERY_"))},
            "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
            "DJANGO_SUPERUSER_PASSWORD": "quickstart",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(self, *command: str, timeout: float = 120) -> str:
        result = subprocess.run(
            self._argv(command), cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
        return output

    def start(self, name: str, *command: str) -> Path:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                self._argv(command), cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append((process, log))
        return log

    def stop(self) -> None:
        for process, _ in self.processes:
            end_group(process)

    def write(self, snippet: Snippet) -> None:
        path = self.folder / snippet.path
        if snippet.appends:
            assert path.exists(), f"{snippet.path} is appended to, but the project has no such file"
            path.write_text(path.read_text() + "\n" + snippet.code)
        else:
            path.write_text(snippet.code)

    def jobs(self) -> list[tuple[int, str, str, int]]:
        with sqlite3.connect(self.folder / "db.sqlite3", timeout=20) as database:
            return database.execute("SELECT id, effect, status, attempts FROM critical_path_job ORDER BY id").fetchall()

    @staticmethod
    def _argv(command: tuple[str, ...]) -> list[str]:
        program, *rest = command
        if program in ("python", "pytest"):
            return [sys.executable, *(["-m", "pytest"] if program == "pytest" else []), *rest]
        if program in ("django-admin", "celery"):
            return [sys.executable, "-m", "django" if program == "django-admin" else "celery", *rest]
        raise AssertionError(f"unexpected command {program!r}")


@pytest.fixture
def project(tmp_path):
    made = Project(tmp_path / "site")
    made.folder.mkdir()
    yield made
    made.stop()


def test_the_snippets_are_found():
    """The page has the files a project needs, and the README its test."""
    paths = {snippet.path for snippet in snippets(QUICKSTART.read_text()) if snippet.caption}
    assert {"mysite/settings.py", "mysite/celery.py", "mysite/__init__.py", "accounts/effects.py"} <= paths
    assert {"accounts/views.py", "mysite/urls.py", "pytest.ini", "accounts/tests.py"} <= paths
    assert "@pytest.mark.django_db" in readme_test()
    paths = {snippet.path for snippet in snippets(TESTING.read_text()) if snippet.caption}
    assert paths == {"accounts/test_signup.py", "accounts/test_testcase.py"}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_the_quickstart_works_as_written(project):
    text = QUICKSTART.read_text()
    shown = commands(text)

    def as_shown(command: str) -> str:
        assert command in shown, f"the quickstart no longer shows `{command}`; update this test with it"
        return command

    project.run(*as_shown("django-admin startproject mysite .").split())
    project.run(*as_shown("python manage.py startapp accounts").split())
    for snippet in snippets(text) + snippets(TESTING.read_text()):
        if snippet.caption and not snippet.name.endswith("-postgres"):
            project.write(snippet)
    (project.folder / "accounts" / "test_readme.py").write_text(readme_test())

    project.run(*as_shown("python manage.py migrate").split())
    project.run(*as_shown("python manage.py createsuperuser").split(), "--noinput", "--username", "admin",
                "--email", "admin@example.com")  # fmt: skip
    assert "System check identified no issues" in project.run("python", "manage.py", "check")

    port = free_port()
    web = project.start("web", *as_shown("python manage.py runserver").split(), f"127.0.0.1:{port}", "--noreload")
    worker = project.start("worker", *as_shown("celery -A mysite worker -l INFO").split(), "-c", "1")
    relay = project.start("relay", *as_shown("python manage.py relay_outbox").split())
    wait_for(lambda: " ready." in worker.read_text(), timeout=90, message=f"the worker ready:\n{worker.read_text()}")

    # curl -d email=ada@example.com http://127.0.0.1:8000/signup/, as the page shows it
    assert as_shown("curl -d email=ada@example.com http://127.0.0.1:8000/signup/")

    def sign_up(email: str) -> str:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/signup/", data=urllib.parse.urlencode({"email": email}).encode()
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            return response.read().decode()

    wait_for(lambda: "Quit the server" in web.read_text(), timeout=60, message=f"the web server:\n{web.read_text()}")
    assert sign_up("ada@example.com") == "Welcome, ada@example.com\n"

    def succeeded(job_id: int) -> bool:
        return any(job[0] == job_id and job[2] == "succeeded" for job in project.jobs())

    wait_for(lambda: succeeded(1), timeout=60, message=f"job 1 succeeded: {project.jobs()}\n{worker.read_text()}")
    assert project.jobs() == [(1, EFFECT, "succeeded", 1)]
    log = worker.read_text()
    assert f"job succeeded id=1 effect={EFFECT} attempt=1" in log, log
    assert "To: ada@example.com" in log, log

    stats = project.run(*as_shown("python manage.py outbox_stats").split())
    header, *rows = [line for line in stats.splitlines() if line.startswith(("side effect", EFFECT))]
    counts = dict(zip(header.split()[2:], rows[0].split()[1:], strict=False))
    assert counts["succeeded"] == "1" and counts["failed"] == counts["dead"] == "0", stats

    page = project.run(
        "python", "manage.py", "shell", "-c",
        "from django.test import Client; from django.contrib.auth.models import User;"
        "c = Client(HTTP_HOST='localhost'); c.force_login(User.objects.get(username='admin'));"
        "r = c.get('/admin/critical_path/job/1/change/'); print(r.status_code); print(r.content.decode())",
    )  # fmt: skip
    assert "200\n<!DOCTYPE html>" in page, page[:2000]
    assert "succeeded" in page.lower() and EFFECT in page

    # A dead letter, replayed as the page shows: it runs again on the relay's next pass.
    with sqlite3.connect(project.folder / "db.sqlite3", timeout=20) as database:
        database.execute("UPDATE critical_path_job SET status = 'dead', last_error = 'SMTPException' WHERE id = 1")
    replay = as_shown(f"python manage.py replay_dead_letters --effect {EFFECT} --yes")
    assert "1 replayed" in project.run(*replay.split())
    wait_for(lambda: succeeded(1), timeout=60, message=f"job 1 replayed: {project.jobs()}\n{relay.read_text()}")
    assert project.jobs() == [(1, EFFECT, "succeeded", 1)]

    # The page's test, the README's and those of the testing guide, with pytest-django, as a user runs them.
    tests = project.run(*as_shown("pytest").split(), "-p", "no:cacheprovider", "-q", "accounts")
    assert "8 passed" in tests, tests
