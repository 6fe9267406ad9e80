"""Correlation ids: from the request (or made up) onto its jobs, their messages and their log lines."""

import logging
import uuid

import pytest
import structlog
from django.db import transaction
from django.test import Client

from critical_path.core import correlation
from critical_path.middleware import CorrelationIdMiddleware
from critical_path.models import Job
from critical_path.observability import log
from critical_path.publishing.handoff import Handoff
from critical_path.publishing.publisher import Publisher
from critical_path.worker import delivery
from critical_path.worker.outcomes import Outcome
from tests.effects import always_fails, note
from tests.helpers import next_message

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.addFilter(log.JobContextFilter())
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def records():
    handler = Records()
    logger = logging.getLogger("critical_path")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the children's cached levels
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_request_id_header_is_stored_on_the_jobs_the_request_emits():
    response = Client().post("/signup/", {"email": "a@example.com"}, headers={"X-Request-ID": "req-42"})
    assert response.headers["X-Request-ID"] == "req-42"
    assert Job.objects.get(pk=response.json()["job"]).correlation_id == "req-42"


def test_request_without_a_valid_id_gets_a_new_one_echoed_in_the_response():
    response = Client().post("/signup/", {"email": "b@example.com"}, headers={"X-Request-ID": "bad id\n" * 20})
    made = response.headers["X-Request-ID"]
    assert len(made) == 32 and "\n" not in made
    assert Job.objects.get(pk=response.json()["job"]).correlation_id == made


def test_header_name_is_a_setting(settings):
    settings.CRITICAL_PATH_CORRELATION_HEADER = "X-Correlation-ID"
    response = Client().post("/signup/", {"email": "c@example.com"}, headers={"X-Correlation-ID": "corr-1"})
    assert response.headers["X-Correlation-ID"] == "corr-1"
    assert Job.objects.get().correlation_id == "corr-1"


def test_the_correlation_id_adds_no_query_to_the_emit(django_assert_num_queries):
    with correlation.correlated("req-7"), transaction.atomic():
        with django_assert_num_queries(1):
            job = note.after_commit("counted")
    assert Job.objects.get(pk=job.pk).correlation_id == "req-7"


def test_the_message_carries_the_correlation_id_in_its_headers():
    queue = f"critical-path-tests-{uuid.uuid4().hex[:8]}"
    handoff = Handoff("default", 1, "tests.effects.note", queue, 0, "req-9")
    publisher = Publisher()
    try:
        assert publisher.publish([handoff]) == [handoff]
    finally:
        publisher.release()
    message, _ = next_message(queue)
    assert message.headers[correlation.MESSAGE_HEADER] == "req-9"


def test_every_line_of_a_run_carries_the_job_context(records):
    with correlation.correlated("req-8"), transaction.atomic():
        job = always_fails.after_commit()
    assert delivery.deliver(job.pk, "default") == Outcome.FAILED
    lines = [(r.getMessage().split(" id=")[0], r.correlation_id, r.job_id, r.effect, r.attempt) for r in records]
    assert lines == [
        ("job claimed", "req-8", job.pk, "tests.effects.always_fails", 1),
        ("job failed", "req-8", job.pk, "tests.effects.always_fails", 1),
    ]


def test_lines_outside_a_job_have_placeholders_or_the_requests_id(records):
    logger = logging.getLogger("critical_path.tests")
    logger.warning("outside")
    with correlation.correlated("req-3"):
        logger.warning("in a request")
    assert [(r.correlation_id, r.job_id, r.effect, r.attempt) for r in records] == [
        ("-", "-", "-", "-"),
        ("req-3", "-", "-", "-"),
    ]


def test_structlog_processor_adds_the_same_fields():
    with structlog.testing.capture_logs(processors=[log.add_job_context]) as captured:
        with correlation.correlated("req-5"):
            structlog.get_logger().info("hello", effect="mine")
    [event] = captured
    assert event == {
        "event": "hello", "log_level": "info",
        "correlation_id": "req-5", "job_id": "-", "effect": "mine", "attempt": "-",
    }  # fmt: skip


def test_install_adds_the_filter_to_handlers_once():
    logger = logging.getLogger("critical_path.tests.install")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        log.install(logger)
        log.install(logger)
        assert sum(isinstance(f, log.JobContextFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


def test_middleware_serves_async_stacks_too():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from django.http import HttpResponse
    from django.test import RequestFactory

    async def view(request):
        return HttpResponse(correlation.get())

    middleware = CorrelationIdMiddleware(view)
    request = RequestFactory().get("/", headers={"X-Request-ID": "req-async"})
    with ThreadPoolExecutor(1) as thread:  # a thread of its own: browser tests leave an event loop in this one
        response = thread.submit(lambda: asyncio.run(middleware(request))).result()
    assert response.content == b"req-async" and response.headers["X-Request-ID"] == "req-async"


def test_the_relays_rescue_lines_carry_the_rescued_jobs_context(records):
    from datetime import timedelta

    from django.utils import timezone

    from critical_path.relay import passes
    from tests.factories import make_job

    job = make_job(
        Job.Status.RUNNING, attempts=1, correlation_id="req-6", lease_expires_at=timezone.now() - timedelta(seconds=5)
    )
    assert passes.run_once("default").rescued == 1
    [line] = [r for r in records if r.getMessage().startswith("job failed")]
    assert (line.correlation_id, line.job_id, line.effect, line.attempt) == ("req-6", job.pk, job.effect, 1)
