"""The critical-path guard: email, outbound connections and Celery publishes inside atomic(), with their lines."""

import http.client
import inspect
import logging
import os
import socket
import textwrap
import threading
import urllib.request

import django
import pytest
from asgiref.sync import async_to_sync
from celery import Celery
from django.core import mail
from django.core.mail import EmailMessage, send_mail, send_mass_mail
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient
from django.urls import path

from critical_path import guard
from critical_path.testing import no_inline_side_effects, run_pending_jobs
from tests.effects import mails
from tests.helpers import ROOT

HERE = os.path.relpath(__file__)


def line_of(marker):
    """The line of this module that ends with ``# <marker>``."""
    lines = inspect.getsource(inspect.getmodule(line_of)).splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))


@pytest.fixture
def listener():
    """A TCP server on a free port that accepts connections and answers any HTTP request with 204."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


@pytest.fixture
def charge():
    """A task of a Celery app on the in-memory transport: real publishes, with nothing left behind."""
    app = Celery("guard-tests", broker="memory://", set_as_current=False)
    app.conf.task_always_eager = False

    @app.task(name="tests.guard.charge", shared=False)  # not added to every app finalized later
    def charge(order_id):
        return order_id

    yield charge
    app.close()


def test_email_sent_is_reported_with_the_line_that_sent_it(mailoutbox):
    with guard.watch() as findings:
        EmailMessage("Hi", "Body", to=["ada@example.com"]).send()  # email-send
        send_mail("Bye", "Body", "from@example.com", ["bob@example.com"])  # send-mail

    assert [(finding.kind, finding.detail, finding.where) for finding in findings] == [
        ("email", "email 'Hi' sent to ada@example.com", f"{HERE}:{line_of('email-send')}"),
        ("email", "email 'Bye' sent to bob@example.com", f"{HERE}:{line_of('send-mail')}"),
    ]
    assert findings[0].function == "test_email_sent_is_reported_with_the_line_that_sent_it"
    assert findings[0].line == 'EmailMessage("Hi", "Body", to=["ada@example.com"]).send()  # email-send'
    assert len(mailoutbox) == 2


def test_send_mass_mail_reports_each_message_once(mailoutbox):
    with guard.watch() as findings:
        send_mass_mail([("A", "x", "f@example.com", ["a@example.com"]), ("B", "y", "f@example.com", ["b@example.com"])])

    assert [finding.detail for finding in findings] == [
        "email 'A' sent to a@example.com",
        "email 'B' sent to b@example.com",
    ]
    assert len(mailoutbox) == 2


def test_an_email_without_recipients_sends_nothing_and_is_not_reported(mailoutbox):
    with guard.watch() as findings:
        EmailMessage("Hi", "Body", to=[]).send()

    assert findings == []


def test_http_requests_are_reported_each_on_new_and_kept_alive_connections(listener):
    with guard.watch() as findings:
        connection = http.client.HTTPConnection("127.0.0.1", listener, timeout=5)
        connection.request("POST", "/contacts", body=b"{}")  # http-request
        assert connection.getresponse().status == 204
        connection.close()
        urllib.request.urlopen(f"http://127.0.0.1:{listener}/ping", timeout=5).close()  # urllib-request

    assert [(finding.kind, finding.detail, finding.where) for finding in findings] == [
        ("http", f"HTTP POST http://127.0.0.1:{listener}/contacts", f"{HERE}:{line_of('http-request')}"),
        ("http", f"HTTP GET http://127.0.0.1:{listener}/ping", f"{HERE}:{line_of('urllib-request')}"),
    ]


def test_other_outbound_connections_are_reported(listener):
    with guard.watch() as findings:
        socket.create_connection(("127.0.0.1", listener), timeout=5).close()  # raw-connect

    assert [(finding.kind, finding.detail, finding.where) for finding in findings] == [
        ("network", f"connection to 127.0.0.1:{listener}", f"{HERE}:{line_of('raw-connect')}")
    ]


def test_connections_of_database_cache_and_broker_clients_are_not_reported(listener):
    """A client module's connect (here code run as ``redis.connection``) is the client's business, not a side effect."""
    code = "import socket\ndef connect(port):\n    socket.create_connection(('127.0.0.1', port), timeout=5).close()\n"
    client = {"__name__": "redis.connection"}
    exec(compile(code, "redis/connection.py", "exec"), client)

    with guard.watch() as findings:
        client["connect"](listener)

    assert findings == []


def test_unix_sockets_are_not_reported(tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s"))
    server.listen()
    with guard.watch() as findings, socket.socket(socket.AF_UNIX) as client:
        client.connect(str(tmp_path / "s"))
    server.close()

    assert findings == []


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_a_celery_publish_inside_atomic_is_reported_and_outside_is_not(charge):
    with guard.watch() as findings:
        charge.delay(1)
        with transaction.atomic():
            charge.apply_async((2,), countdown=5)  # celery-publish
        with transaction.atomic(using="other"):
            charge.delay(3)

    assert [(finding.kind, finding.detail, finding.where) for finding in findings] == [
        (
            "celery",
            "Celery task 'tests.guard.charge' published inside atomic() on 'default', bypassing the outbox",
            f"{HERE}:{line_of('celery-publish')}",
        ),
        (
            "celery",
            "Celery task 'tests.guard.charge' published inside atomic() on 'other', bypassing the outbox",
            f"{HERE}:{line_of('celery-publish') + 2}",
        ),
    ]


@pytest.mark.django_db(databases=["default", "other"])
def test_the_test_cases_own_transaction_does_not_count_as_atomic(charge):
    with guard.watch() as findings:
        charge.delay(1)
        with transaction.atomic():
            charge.delay(2)

    assert [finding.kind for finding in findings] == ["celery"]


@pytest.mark.django_db(transaction=True)
def test_critical_paths_own_messages_are_not_reported(charge):
    with guard.watch() as findings, transaction.atomic():
        charge.app.send_task("critical_path.deliver", args=(1, "default"))

    assert findings == []


@pytest.mark.django_db
def test_what_jobs_do_when_delivered_in_the_process_is_not_reported(mailoutbox):
    with guard.watch() as findings:
        mails.after_commit("From the job")
        run_pending_jobs().assert_succeeded()
        # Django 6.1 deprecates get_connection() for its mailers.
        with mail.mailers.default if django.VERSION >= (6, 1) else mail.get_connection() as connection:
            connection.send_messages([EmailMessage("Inline", "Body", to=["a@example.com"])])

    assert [message.subject for message in mailoutbox] == ["From the job", "Inline"]
    assert [finding.detail for finding in findings] == ["email 'Inline' sent to a@example.com"]


def test_guards_are_per_context_concurrent_threads_do_not_mix(mailoutbox):
    ready, sent = threading.Barrier(2), []

    def unguarded():
        ready.wait(timeout=5)
        EmailMessage("Other", "Body", to=["b@example.com"]).send()
        sent.append(True)

    thread = threading.Thread(target=unguarded)
    thread.start()
    with guard.watch() as findings:
        ready.wait(timeout=5)
        EmailMessage("Mine", "Body", to=["a@example.com"]).send()
        thread.join(timeout=5)

    assert sent == [True]
    assert [finding.detail for finding in findings] == ["email 'Mine' sent to a@example.com"]


def test_nested_guards_each_see_their_block_and_the_outer_one_sees_all(mailoutbox):
    with guard.watch() as outer:
        EmailMessage("One", "Body", to=["a@example.com"]).send()
        with guard.watch() as inner:
            EmailMessage("Two", "Body", to=["a@example.com"]).send()

    assert [finding.detail for finding in inner] == ["email 'Two' sent to a@example.com"]
    assert [finding.detail for finding in outer] == [
        "email 'One' sent to a@example.com",
        "email 'Two' sent to a@example.com",
    ]


def test_no_inline_side_effects_fails_listing_each_with_its_line(mailoutbox):
    with pytest.raises(AssertionError) as failure, no_inline_side_effects():
        EmailMessage("Hi", "Body", to=["a@example.com"]).send()  # context-manager

    assert str(failure.value) == (
        "1 side effect(s) done inline:\n"
        f"  email 'Hi' sent to a@example.com at {HERE}:{line_of('context-manager')} in "
        "test_no_inline_side_effects_fails_listing_each_with_its_line(): "
        'EmailMessage("Hi", "Body", to=["a@example.com"]).send()  # context-manager'
    )
    with no_inline_side_effects() as findings:
        pass
    assert findings == []


# The middleware, on views of this module.


def sends_email(request: HttpRequest) -> HttpResponse:
    EmailMessage("Hi", "Body", to=["a@example.com"]).send()  # view-email
    return HttpResponse("sent")


async def sends_email_async(request: HttpRequest) -> HttpResponse:
    EmailMessage("Hi", "Body", to=["a@example.com"]).send()  # async-view-email
    return HttpResponse("sent")


def quiet(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nothing")


urlpatterns = [path("send/", sends_email), path("send-async/", sends_email_async), path("quiet/", quiet)]


@pytest.mark.urls(__name__)
def test_the_middleware_does_nothing_by_default(client, mailoutbox, caplog):
    assert client.get("/send/").status_code == 200
    assert caplog.records == []


@pytest.mark.urls(__name__)
def test_the_middleware_warns_of_each_inline_side_effect(client, settings, mailoutbox, caplog):
    settings.CRITICAL_PATH_GUARD = "warn"
    with caplog.at_level(logging.WARNING, logger="critical_path.guard"):
        assert client.get("/send/").status_code == 200
        assert client.get("/quiet/").status_code == 200

    assert [record.getMessage() for record in caplog.records] == [
        "inline side effect in GET /send/: email 'Hi' sent to a@example.com at "
        f"{HERE}:{line_of('view-email')}: "
        'EmailMessage("Hi", "Body", to=["a@example.com"]).send()  # view-email'
    ]


@pytest.mark.urls(__name__)
def test_the_middleware_raises_once_the_view_has_answered(client, settings, mailoutbox):
    settings.CRITICAL_PATH_GUARD = "raise"
    with pytest.raises(guard.InlineSideEffect) as failure:
        client.get("/send/")

    assert len(mailoutbox) == 1
    assert [finding.where for finding in failure.value.findings] == [f"{HERE}:{line_of('view-email')}"]
    assert str(failure.value).startswith("GET /send/ did 1 side effect(s) inline:\n  email 'Hi' sent to a@example.com")
    assert client.get("/quiet/").status_code == 200


@pytest.mark.urls(__name__)
def test_the_middleware_guards_async_requests(settings, mailoutbox):
    settings.CRITICAL_PATH_GUARD = "raise"
    client = AsyncClient()
    with pytest.raises(guard.InlineSideEffect) as failure:
        async_to_sync(client.get)("/send-async/")
    assert [finding.where for finding in failure.value.findings] == [f"{HERE}:{line_of('async-view-email')}"]

    with pytest.raises(guard.InlineSideEffect) as failure:
        async_to_sync(client.get)("/send/")  # a sync view, run in a thread with the request's context
    assert [finding.where for finding in failure.value.findings] == [f"{HERE}:{line_of('view-email')}"]


def test_an_invalid_guard_setting_is_a_system_check_error(settings):
    from critical_path.checks import check_settings

    settings.CRITICAL_PATH_GUARD = "log"
    assert [(error.id, error.msg) for error in check_settings()] == [
        ("critical_path.E001", "CRITICAL_PATH_GUARD is 'log'; it must be 'warn', 'raise' or None.")
    ]


def test_the_fixture_fails_a_test_that_does_side_effects_inline(pytester, monkeypatch, tmp_path):
    """A separate pytest run, as a project's: the plugin's ``assert_no_inline_side_effects`` fixture."""
    pytester.makepyfile(
        test_project=textwrap.dedent(
            """
            from django.core.mail import EmailMessage

            def test_quiet(assert_no_inline_side_effects):
                assert assert_no_inline_side_effects == []

            def test_sends(assert_no_inline_side_effects, mailoutbox):
                EmailMessage("Hi", "Body", to=["a@example.com"]).send()
                assert len(assert_no_inline_side_effects) == 1
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.settings")
    monkeypatch.setenv("CRITICAL_PATH_TEST_DATA", str(tmp_path / "data"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=1, failed=1)  # a failure of the test, not an error of its teardown
    result.stdout.fnmatch_lines(
        [
            "*1 side effect(s) done inline:",
            "*email 'Hi' sent to a@example.com at test_project.py:7 in test_sends(): EmailMessage(*).send()",
        ]
    )
