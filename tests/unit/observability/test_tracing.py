"""OpenTelemetry: a job's publish and runs join the trace of the span it was emitted in (SDK, in-memory exporter)."""

import sys

import pytest
from django.db import transaction
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from critical_path.models import Job
from critical_path.observability import tracing
from critical_path.outbox import transitions
from critical_path.publishing import dispatcher as dispatch
from critical_path.worker import delivery
from tests.effects import always_fails, chain, note
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

QUEUE = "critical-path-tests-idle"
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _tracer_provider():
    """The SDK as a project sets it up: a global tracer provider (which can be set once per process)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans():
    """The spans finished during the test, by name (each name once)."""
    EXPORTER.clear()

    def finished():
        found = {}
        for span in EXPORTER.get_finished_spans():
            assert span.name not in found, f"two spans named {span.name!r}"
            found[span.name] = span
        return found

    return finished


def request_span():
    return trace.get_tracer("tests").start_as_current_span("request", kind=SpanKind.SERVER)


def traceparent(span):
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_one_trace_holds_the_request_the_publish_and_the_run(spans):
    with request_span() as request, transaction.atomic():
        job = note.after_commit("traced")
    assert Job.objects.get().trace_context == job.trace_context == traceparent(request)
    assert dispatch.shutdown()  # the dispatcher has published the job
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.SUCCEEDED

    found = spans()
    assert set(found) == {"request", f"publish {QUEUE}", f"process {QUEUE}", "claim", "run tests.effects.note"}
    publish, process = found[f"publish {QUEUE}"], found[f"process {QUEUE}"]
    claim, run = found["claim"], found["run tests.effects.note"]
    trace_id = request.get_span_context().trace_id
    assert {span.context.trace_id for span in found.values()} == {trace_id}
    assert publish.parent.span_id == process.parent.span_id == request.get_span_context().span_id
    assert claim.parent.span_id == run.parent.span_id == process.context.span_id
    assert (publish.kind, process.kind, claim.kind, run.kind) == (
        SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL, SpanKind.INTERNAL,
    )  # fmt: skip
    assert process.start_time == claim.start_time <= claim.end_time <= run.start_time <= run.end_time
    job_attributes = {
        "critical_path.job.id": job.pk,
        "critical_path.side_effect": "tests.effects.note",
        "critical_path.database": "default",
    }
    messaging = {
        "messaging.system": "celery",
        "messaging.destination.name": QUEUE,
        "messaging.message.conversation_id": job.correlation_id,
    }
    assert dict(publish.attributes) == {
        **job_attributes, **messaging, "messaging.operation.type": "send", "messaging.operation.name": "publish",
    }  # fmt: skip
    assert dict(process.attributes) == {
        **job_attributes, **messaging, "critical_path.job.attempt": 1,
        "messaging.operation.type": "process", "messaging.operation.name": "process",
    }  # fmt: skip
    assert dict(run.attributes) == dict(claim.attributes) == {**job_attributes, "critical_path.job.attempt": 1}
    assert all(span.status.status_code == StatusCode.UNSET for span in found.values())


def test_outside_a_span_nothing_is_stored_and_no_span_is_made(spans):
    with transaction.atomic():
        job = note.after_commit("untraced")
    assert dispatch.shutdown()
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.SUCCEEDED
    assert Job.objects.get().trace_context == job.trace_context == ""
    assert spans() == {}


def test_a_failing_attempt_records_its_exception_and_error_status(spans):
    with request_span(), transaction.atomic():
        job = always_fails.after_commit()
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.FAILED
    found = spans()
    run, process = found["run tests.effects.always_fails"], found[f"process {QUEUE}"]
    assert run.status.status_code == process.status.status_code == StatusCode.ERROR
    assert process.status.description == "ValueError: downstream is down"
    [event] = run.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "downstream is down"


def test_retries_and_replays_stay_in_the_emitting_trace(spans):
    with request_span() as request, transaction.atomic():
        job = always_fails.after_commit()
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.FAILED
    assert dispatch.shutdown()  # the retry is published at once, due after its backoff (a timed hand-off)
    wait_for(lambda: delivery.deliver(job.pk, "default") == delivery.Outcome.DEAD, message="the retry ran once due")
    assert transitions.replay([job.pk]) == 1
    assert dispatch.shutdown()
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.FAILED

    finished = EXPORTER.get_finished_spans()
    trace_id = request.get_span_context().trace_id
    processes = [span for span in finished if span.name == f"process {QUEUE}"]
    publishes = [span for span in finished if span.name == f"publish {QUEUE}"]
    assert [span.attributes["critical_path.job.attempt"] for span in processes] == [1, 2, 1]
    assert len(publishes) == 3  # the dispatcher's, the retry's, the replay's
    for span in processes + publishes:
        assert span.context.trace_id == trace_id
        assert span.parent.span_id == request.get_span_context().span_id


def test_a_job_emitted_by_a_running_side_effect_continues_its_trace(spans):
    with request_span() as request, transaction.atomic():
        parent = chain.after_commit("nested")
    assert delivery.deliver(parent.pk, "default") == delivery.Outcome.SUCCEEDED
    child = Job.objects.exclude(pk=parent.pk).get()
    assert delivery.deliver(child.pk, "default") == delivery.Outcome.SUCCEEDED
    finished = {span.name: span for span in EXPORTER.get_finished_spans() if span.name.startswith("run ")}
    run_parent, run_child = finished["run tests.effects.chain"], finished["run tests.effects.note"]
    assert child.trace_context == traceparent(run_parent)
    assert run_child.context.trace_id == request.get_span_context().trace_id


def test_tracestate_travels_with_the_job_and_is_truncated_to_fit(spans):
    state = TraceState([("vendor", "a" * 80), ("other", "b" * 80), ("third", "c" * 80)])
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=state)
    with trace.use_span(trace.NonRecordingSpan(remote)), transaction.atomic():
        job = note.after_commit("state")
    stored = Job.objects.get().trace_context
    assert stored == job.trace_context == f"00-{0x1234:032x}-{0x5678:016x}-01 vendor={'a' * 80},other={'b' * 80}"
    assert len(stored) <= tracing.MAX_LENGTH == Job._meta.get_field("trace_context").max_length
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.SUCCEEDED
    process = spans()[f"process {QUEUE}"]
    assert process.parent.span_id == 0x5678 and process.context.trace_id == 0x1234
    assert process.context.trace_state == TraceState([("vendor", "a" * 80), ("other", "b" * 80)])


def test_an_unsampled_request_propagates_its_decision(spans):
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    with trace.use_span(trace.NonRecordingSpan(remote)), transaction.atomic():
        job = note.after_commit("unsampled")
    assert job.trace_context.endswith("-00")
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.SUCCEEDED
    assert spans() == {}  # the SDK's default sampler follows the parent's decision


def test_without_opentelemetry_emit_stores_nothing(monkeypatch, spans):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setattr(tracing, "_trace", None)
    with request_span(), transaction.atomic():
        job = note.after_commit("no api")
    assert job.trace_context == "" and tracing._trace is False
    assert delivery.deliver(job.pk, "default") == delivery.Outcome.SUCCEEDED
    assert set(spans()) == {"request"}
