"""The hand-off after commit: real broker, real threads, a real fork; brokers that refuse or hang."""

import os
import socket
import time
import traceback
import uuid
import warnings

import pytest
from celery import Celery
from django.db import connections, transaction
from django.test import Client

from critical_path.models import Job
from critical_path.publishing import dispatcher as dispatch
from critical_path.publishing.handoff import Handoff
from critical_path.publishing.publisher import Publisher, bounded_transport_options
from critical_path.relay import passes
from tests.celery_app import app as tests_app
from tests.effects import note, stopped_by_its_soft_limit
from tests.helpers import next_message, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def status(job):
    return Job.objects.using(job._state.db).get(pk=job.pk).status


def published(effect, *args, **options):
    """The message the dispatcher publishes for ``effect(*args)`` emitted with ``options``, and the broker's driver."""
    queue = f"critical-path-tests-{uuid.uuid4().hex[:8]}"
    with transaction.atomic():
        job = effect.using(queue=queue, **options).after_commit(*args)
    wait_for(lambda: status(job) == Job.Status.ENQUEUED, message="enqueued")
    return (job, *next_message(queue))


def test_message_names_the_job_and_database_and_shows_the_side_effect():
    job, message, driver = published(note, "x", priority=7)
    assert message.headers["task"] == "critical_path.deliver"
    assert message.headers["shadow"] == "tests.effects.note"
    assert message.headers["timelimit"] == [300, None]
    args, kwargs, _ = message.payload
    assert (args, kwargs) == ([job.pk, "default"], {})
    if driver == "redis":
        assert message.properties["priority"] == 2  # Redis consumes 0 first: 9 - 7


def test_message_carries_the_side_effects_hard_and_soft_time_limits():
    _, message, _ = published(stopped_by_its_soft_limit)
    assert message.headers["timelimit"] == [30, 2]


def test_a_publish_looks_each_side_effect_up_once_and_a_missing_one_gets_the_default_limits(monkeypatch, caplog):
    from critical_path.core import registry

    looked_up = []

    def resolve(path):
        looked_up.append(path)
        return real_resolve(path)

    real_resolve = registry.resolve
    monkeypatch.setattr(registry, "resolve", resolve)
    queue = f"critical-path-tests-{uuid.uuid4().hex[:8]}"
    paths = ["tests.effects.stopped_by_its_soft_limit", "tests.effects.renamed_since", "tests.effects.renamed_since"]
    handoffs = [Handoff("default", pk, path, queue, 0) for pk, path in enumerate(paths, 1)]
    publisher = Publisher()
    with caplog.at_level("DEBUG", logger="critical_path.publishing.publisher"):
        assert publisher.publish(handoffs) == handoffs
    publisher.release()

    assert sorted(looked_up) == sorted(set(paths))
    limits = [next_message(queue)[0].headers["timelimit"] for _ in handoffs]
    assert sorted(limits, key=str) == [[30, 2], [300, None], [300, None]]
    [record] = [r for r in caplog.records if "default time limits" in r.getMessage()]
    assert "No side effect at 'tests.effects.renamed_since'" in record.getMessage()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker(monkeypatch):
    """Point the process's Celery app at another broker URL for one test."""

    def use(url, transport_options=None):
        monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery prefers it to the configured URL
        app = Celery("unreachable", set_as_current=False)
        app.conf.broker_url = url
        app.conf.broker_connection_timeout = 1
        app.conf.broker_transport_options = (
            {"socket_timeout": 3, "socket_connect_timeout": 3} if transport_options is None else transport_options
        )
        app.set_current()
        app.set_default()
        return app

    yield use
    assert dispatch.shutdown(timeout=20)
    tests_app.set_current()
    tests_app.set_default()


@pytest.fixture
def hung_broker_url():
    """A server that accepts connections and never answers: a broker that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


def test_an_unreachable_broker_is_logged_once_naming_its_url_and_the_setting(broker, caplog):
    port = free_port()
    broker(f"redis://:s3cret@127.0.0.1:{port}/0")
    publisher = Publisher()
    handoff = Handoff("default", 1, "tests.effects.note", "q", 0)

    assert publisher.publish([handoff]) == [] and publisher.publish([handoff]) == []

    [line] = [record.getMessage() for record in caplog.records if "broker unreachable" in record.getMessage()]
    assert line.startswith(
        f"broker unreachable at redis://:**@127.0.0.1:{port}/0 (CELERY_BROKER_URL), jobs left to the relay: "
    )
    assert "s3cret" not in caplog.text


def signup_timed():
    started = time.monotonic()
    response = Client().post("/signup/", {"email": "ada@example.com"})
    assert response.status_code == 200
    return response.json(), time.monotonic() - started


@pytest.mark.parametrize("kind", ["refusing", "hung"])
def test_broker_down_at_commit_adds_nothing_to_the_request(kind, broker, hung_broker_url):
    broker(hung_broker_url if kind == "hung" else f"redis://127.0.0.1:{free_port()}/0")
    body, elapsed = signup_timed()
    assert elapsed < 1.0  # the hung broker holds the dispatcher for 3 s
    body_again, elapsed_again = signup_timed()
    assert elapsed_again < 1.0
    assert dispatch.shutdown(timeout=20)
    jobs = Job.objects.filter(pk__in=[body["job"], body_again["job"]])
    assert set(jobs.values_list("status", "attempts")) == {(Job.Status.PENDING, 0)}


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_hung_broker_without_configured_timeouts_holds_a_publisher_for_broker_timeout(
    scheme, broker, hung_broker_url, settings
):
    settings.CRITICAL_PATH_BROKER_TIMEOUT = 0.5
    app = broker(hung_broker_url.replace("redis://", f"{scheme}://"), transport_options={})
    assert bounded_transport_options(app) == (
        {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        if scheme == "redis"
        else {"read_timeout": 0.5, "write_timeout": 0.5}
    )
    handoff = Handoff("default", 1, "tests.effects.note", "critical-path-tests-idle", 0)
    started = time.monotonic()
    assert Publisher().publish([handoff]) == []
    assert time.monotonic() - started < 6.0  # a few socket operations (connect handshake, the batch), each bounded


def test_timeouts_the_project_configures_win(broker, settings):
    app = broker(f"redis://127.0.0.1:{free_port()}/0", transport_options={"socket_timeout": 30, "x": 1})
    assert bounded_transport_options(app) == {"socket_timeout": 30, "socket_connect_timeout": 5.0, "x": 1}


def test_relay_leaves_jobs_alone_while_the_broker_is_down(broker, settings):
    settings.CRITICAL_PATH_RELAY_GRACE = 0.01
    broker(f"redis://127.0.0.1:{free_port()}/0")
    job = note.after_commit("waiting")
    assert dispatch.shutdown(timeout=20)
    [result] = passes.Relay(["default"]).run_pass()
    assert (result.broker_down, result.published) == (True, 0)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.PENDING, 0)


def test_forked_child_emits_and_dispatches():
    parent_job = note.after_commit("parent")  # the parent's dispatcher is running when it forks
    wait_for(lambda: status(parent_job) == Job.Status.ENQUEUED, message="parent's job enqueued")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 2
        try:
            for connection in connections.all():
                connection.connection = None  # the parent's sockets are not the child's to use or close
            with transaction.atomic():
                note.after_commit("child")
            code = 0 if dispatch.shutdown(timeout=20) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, exit_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(exit_status) == 0
    child_job = Job.objects.get(args=["child"])
    wait_for(lambda: status(child_job) == Job.Status.ENQUEUED, message="child's job enqueued")


def test_full_dispatcher_queue_leaves_jobs_to_the_relay(broker, hung_broker_url, settings):
    settings.CRITICAL_PATH_DISPATCHER_QUEUE_SIZE = 1
    settings.CRITICAL_PATH_DISPATCHER_BATCH_SIZE = 1
    broker(hung_broker_url)
    started = time.monotonic()
    for index in range(5):
        note.after_commit(f"burst {index}")
    assert time.monotonic() - started < 1.0
    assert dispatch.get().dropped >= 3
    assert dispatch.shutdown(timeout=20)
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.PENDING}


def test_the_dispatcher_lingers_only_while_busy(settings):
    """After a quiet spell a commit's jobs go out at once; commits close behind a batch wait to go out together."""
    dispatch.shutdown(timeout=30)
    settings.CRITICAL_PATH_DISPATCHER_LINGER = 1.0  # the longest allowed: waiting for it would show
    try:
        with transaction.atomic():
            alone = note.after_commit("alone")
        wait_for(lambda: status(alone) == Job.Status.ENQUEUED, message="the first job enqueued")
        alone.refresh_from_db()
        assert (alone.enqueued_at - alone.created_at).total_seconds() < 1.0  # published without lingering
        with transaction.atomic():
            first = note.after_commit("first")
        with transaction.atomic():
            second = note.after_commit("second")
        wait_for(lambda: status(second) == Job.Status.ENQUEUED, message="the later jobs enqueued")
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.enqueued_at == second.enqueued_at  # one batch, one UPDATE
        # A linger's wait later (the batch above waited it out), the next commit is alone again: at once.
        with transaction.atomic():
            later = note.after_commit("later")
        wait_for(lambda: status(later) == Job.Status.ENQUEUED, message="the last job enqueued")
        later.refresh_from_db()
        assert (later.enqueued_at - later.created_at).total_seconds() < 1.0
    finally:
        dispatch.shutdown(timeout=30)
