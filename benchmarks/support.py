"""What every benchmark sets up: a PostgreSQL database of its own and a redis-server of its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import NamedTuple


class Setup(NamedTuple):
    """What :func:`environment` set up: the PostgreSQL server's version and the broker."""

    postgres: str
    broker_url: str
    redis: subprocess.Popen[bytes] | None  # the redis-server of the benchmark's own; None for BENCH_BROKER_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server on a free port (no persistence), stopped on exit; yields its URL and process.

    The benchmark may stop (SIGSTOP) or kill it meanwhile: on exit a stopped
    server is continued before it is terminated.
    """
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server not found: install it, or set BENCH_BROKER_URL.")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as folder:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", folder],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
            process.wait()


@contextlib.contextmanager
def environment(name: str) -> Iterator[Setup]:
    """A fresh PostgreSQL database ``name`` and a broker, set in the environment for benchmarks.settings.

    PostgreSQL comes from BENCH_DATABASE_URL (default: the local server); the
    database (``name`` after BENCH_DATABASE_PREFIX, if set) is created, and
    dropped on exit. The broker is BENCH_BROKER_URL, or a redis-server of its own.
    """
    import psycopg

    name = os.environ.get("BENCH_DATABASE_PREFIX", "") + name
    admin_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    base, _, _ = admin_url.rpartition("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
        version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    with contextlib.ExitStack() as stack:
        redis = None
        if "BENCH_BROKER_URL" not in os.environ:
            os.environ["BENCH_BROKER_URL"], redis = stack.enter_context(redis_server())
            stack.callback(os.environ.pop, "BENCH_BROKER_URL")
        os.environ["BENCH_DATABASE_URL"] = f"{base}/{name}"
        os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
        try:
            from benchmarks.celery_app import app

            app.set_default()
            yield Setup(version, os.environ["BENCH_BROKER_URL"], redis)
        finally:
            os.environ["BENCH_DATABASE_URL"] = admin_url
            from django.db import connections

            connections.close_all()
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Observability:
    """Prometheus metrics and OpenTelemetry tracing, switched on and off between the variants of one run.

    On: prometheus-client counts (as when it is installed) and an SDK tracer
    provider records every span through a ``BatchSpanProcessor`` to an exporter
    that drops them (what a real exporter costs is its own business). Off:
    critical_path's metric hooks return at once (as without prometheus-client)
    and no span is current, so nothing is traced. Needs the ``test`` extra
    (prometheus-client, opentelemetry-sdk).
    """

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from critical_path.observability import metrics

        class Dropped(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(Dropped()))
        trace.set_tracer_provider(self.provider)
        self.tracer = trace.get_tracer("benchmarks")
        self._metrics = metrics
        metrics._get()  # the metrics exist from here on; switching flips whether the hooks use them

    def switch(self, on: bool) -> None:
        self._metrics._available = on

    def span(self, name: str) -> contextlib.AbstractContextManager[object]:
        """A span standing in for the request's (as opentelemetry-instrumentation-django makes one)."""
        from opentelemetry.trace import SpanKind

        return self.tracer.start_as_current_span(name, kind=SpanKind.SERVER)

    def close(self) -> None:
        self.provider.shutdown()
