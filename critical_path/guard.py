"""The critical-path guard: side effects done synchronously inside a request, with the line that did each.

While ``watch()`` is active, in its context (a request, a test), four kinds of
work are recorded as ``Finding`` entries:

- ``email``: a message sent through ``EmailMessage.send()`` (``send_mail``,
  ``mail_admins``, ``EmailMultiAlternatives``…) or rendered by an email backend
  (``send_mass_mail`` with the SMTP, console, file or locmem backend);
- ``http``: a request sent with ``http.client`` (so ``urllib``, ``urllib3``
  and ``requests``), on a new or a kept-alive connection;
- ``network``: any other outbound TCP connection (``socket.socket.connect``:
  ``httpx``, ``smtplib``, raw sockets), except those the database drivers,
  cache clients, the broker's clients and the email backends open (listed in
  ``CLIENT_MODULES``);
- ``celery``: a Celery task published inside ``transaction.atomic()``: the
  message can be consumed before the commit, or sent for a transaction that
  rolls back. critical_path's own messages are not reported.

Each finding carries the file and line of the project's code that did it: the
innermost frame outside critical_path, the standard library and site-packages.

``critical_path.middleware.CriticalPathGuardMiddleware`` watches each request
and hands what it did to ``report_request()``; ``critical_path.testing`` and the
pytest plugin watch a test.

The hooks are installed once, the first time a guard is entered, and cost a
context-variable read when no guard is active. Work done by critical_path's
delivery (``CRITICAL_PATH_EAGER`` in tests) is off the request path in
production, so it is not reported; nor is work in threads the request starts
(they do not inherit its context).
"""

from __future__ import annotations

import dataclasses
import linecache
import logging
import os
import socket
import sys
import sysconfig
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from types import FrameType
from typing import Any

from django.http import HttpRequest

from critical_path.core import context
from critical_path.exceptions import CriticalPathError

logger = logging.getLogger(__name__)

EMAIL = "email"
HTTP = "http"
NETWORK = "network"
CELERY = "celery"

#: Modules whose own connections are not side effects of the request (their top-level package names).
CLIENT_MODULES = (
    "django.db", "django.core.cache", "django.core.mail", "psycopg", "psycopg2", "psycopg_pool", "MySQLdb",
    "pymysql", "oracledb", "redis", "django_redis", "pymemcache", "pylibmc", "kombu", "amqp", "celery",
    # their requests are reported as such (``http``), on new and kept-alive connections alike
    "http.client", "urllib3",
)  # fmt: skip

#: Tasks critical_path publishes itself (from the dispatcher's thread, or the relay).
OWN_TASKS = ("critical_path.",)

MODES = ("warn", "raise")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One side effect done inline: its kind, what it was, and where the project's code did it."""

    kind: str
    detail: str
    filename: str
    lineno: int
    function: str

    @property
    def where(self) -> str:
        """``path:line``, relative to the working directory when under it."""
        path = self.filename
        try:
            relative = os.path.relpath(path)
        except ValueError:  # another drive (Windows)
            relative = path
        return f"{path if relative.startswith('..') else relative}:{self.lineno}"

    @property
    def line(self) -> str:
        return linecache.getline(self.filename, self.lineno).strip()

    def __str__(self) -> str:
        text = f"{self.detail} at {self.where} in {self.function}()"
        return f"{text}: {self.line}" if self.line else text


class Findings(list[Finding]):
    """What one guarded block did inline, in order."""

    def of(self, kind: str) -> list[Finding]:
        return [finding for finding in self if finding.kind == kind]

    def report(self) -> str:
        """One line per finding, for an error message."""
        return "\n".join(f"  {finding}" for finding in self)


class InlineSideEffect(CriticalPathError):
    """A request did side effects inline (``CRITICAL_PATH_GUARD = "raise"``); ``findings`` lists them."""

    def __init__(self, message: str, findings: Sequence[Finding]) -> None:
        super().__init__(message)
        self.findings = list(findings)


@dataclasses.dataclass
class _Watch:
    findings: Findings
    emails: list[object]


_current: ContextVar[_Watch | None] = ContextVar("critical_path_guard", default=None)
_install_lock = threading.Lock()
_installed = False


@contextmanager
def watch() -> Iterator[Findings]:
    """Record the side effects this block does inline (in its context: not in threads it starts).

    Nested guards each see what their block did, and hand it to the enclosing one.
    """
    install()
    outer = _current.get()
    current = _Watch(Findings(), [])
    token = _current.set(current)
    try:
        yield current.findings
    finally:
        _current.reset(token)
        if outer is not None:
            outer.findings.extend(current.findings)
            outer.emails.extend(current.emails)


def record(kind: str, detail: str) -> None:
    """Add a finding to the active guard, located at the project's frame that led here."""
    current = _current.get()
    if current is None or context.current_job_or_none() is not None:
        return
    frame = _project_frame(sys._getframe(1))
    code = frame.f_code
    current.findings.append(Finding(kind, detail, code.co_filename, frame.f_lineno, code.co_name))


def install() -> None:
    """Install the hooks (once per process): email sending, socket connects, Celery's publish signal."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        _install_email()
        _install_http()
        _install_socket()
        _install_celery()
        _installed = True


def report_request(request: HttpRequest, findings: Findings, mode: str) -> None:
    """Act on what a request did inline, per ``mode`` (``CRITICAL_PATH_GUARD``): log each finding, or raise."""
    if not findings:
        return
    if mode == "raise":
        raise InlineSideEffect(
            f"{request.method} {request.path} did {len(findings)} side effect(s) inline:\n{findings.report()}\n"
            "Move each into a side effect emitted with after_commit(), or set CRITICAL_PATH_GUARD = 'warn'.",
            findings,
        )
    for finding in findings:
        logger.warning(
            "inline side effect in %s %s: %s at %s: %s",
            request.method,
            request.path,
            finding.detail,
            finding.where,
            finding.line,
        )


def _install_email() -> None:
    from django.core.mail import EmailMessage

    send, render = EmailMessage.send, EmailMessage.message

    def guarded_send(self: EmailMessage, *args: Any, **kwargs: Any) -> int:
        if _current.get() is not None and self.recipients():
            _sending(self)
        return send(self, *args, **kwargs)

    def guarded_message(self: EmailMessage, *args: Any, **kwargs: Any) -> Any:
        if _current.get() is not None:
            _sending(self)
        return render(self, *args, **kwargs)

    EmailMessage.send = guarded_send  # type: ignore[method-assign]
    EmailMessage.message = guarded_message  # type: ignore[method-assign]


def _sending(message: Any) -> None:
    current = _current.get()
    if current is None or any(seen is message for seen in current.emails):
        return
    current.emails.append(message)
    record(EMAIL, f"email {message.subject!r} sent to {', '.join(message.recipients())}")


def _install_http() -> None:
    import http.client

    putrequest = http.client.HTTPConnection.putrequest

    def guarded_putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        if _current.get() is not None:
            scheme = "https" if self.default_port == http.client.HTTPS_PORT else "http"
            target = url if "://" in url else f"{scheme}://{self.host}:{self.port}{url}"
            record(HTTP, f"HTTP {method} {target}")
        putrequest(self, method, url, *args, **kwargs)

    http.client.HTTPConnection.putrequest = guarded_putrequest  # type: ignore[method-assign]


def _install_socket() -> None:
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if _current.get() is not None:
            _connecting(self, address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if _current.get() is not None:
            _connecting(self, address)
        return connect_ex(self, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign, assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign, assignment]


def _connecting(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if any(module == name or module.startswith(name + ".") for name in CLIENT_MODULES):
            return
        frame = frame.f_back
    host, port = address[0], address[1]
    record(NETWORK, f"connection to {host}:{port}")


def _install_celery() -> None:
    from celery.signals import before_task_publish

    before_task_publish.connect(_publishing, weak=False, dispatch_uid="critical_path.guard")


def _publishing(sender: str | None = None, **kwargs: Any) -> None:
    if _current.get() is None or str(sender).startswith(OWN_TASKS):
        return
    databases = _in_atomic()
    if databases:
        record(
            CELERY,
            f"Celery task {sender!r} published inside atomic() on {', '.join(map(repr, databases))}, "
            "bypassing the outbox",
        )


def _in_atomic() -> list[str]:
    """The databases whose connection is in an ``atomic()`` block of the project's (not a test case's)."""
    from django.db import connections

    return [
        connection.alias
        for connection in connections.all(initialized_only=True)
        if any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)
    ]


def _project_frame(frame: FrameType) -> FrameType:
    """The innermost frame of the project's own code; else the innermost outside critical_path and the stdlib."""
    fallback = None
    current: FrameType | None = frame
    while current is not None:
        filename = current.f_code.co_filename
        if not filename.startswith(_library_paths()) and not filename.startswith("<"):
            return current
        if fallback is None and not filename.startswith(_library_paths()[:3]):
            fallback = current
        current = current.f_back
    return fallback or frame


@cache
def _library_paths() -> tuple[str, ...]:
    """critical_path, the standard library, then site-packages: frames there are not the project's."""
    paths = sysconfig.get_paths()
    own = str(Path(__file__).resolve().parent) + os.sep
    stdlib = [paths["stdlib"] + os.sep, paths["platstdlib"] + os.sep]
    packages = {paths["purelib"] + os.sep, paths["platlib"] + os.sep}
    packages.update(path + os.sep for path in sys.path if path.endswith(("site-packages", "dist-packages")))
    return (own, *stdlib, *sorted(packages))
