"""The critical path, measured: N signups inline, then N on the critical path, through a real server.

python -m example_project.demo                          # the benchmark: a table in under a minute
python -m example_project.demo --signups 100 --crm-latency 1 --failure-rate 0.3
python -m example_project.demo --serve                  # the signup page at http://127.0.0.1:8000/, until Ctrl-C

It migrates, then starts as child processes an SMTP sink, the fake CRM, a Celery worker, the relay and
Django's development server, and stops them all when it ends, Ctrl-C included. Each signup is a
``POST /api/signups/`` over HTTP; the table gives each mode's response times, its throughput, and when
the side effects were all done.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
MODES = ["inline", "critical-path"]
FINAL = ["succeeded", "dead", "discarded", "coalesced"]


@dataclass
class Run:
    """One mode's measurements: each response's seconds, the run's wall time, when the side effects were done."""

    mode: str
    seconds: list[float] = field(default_factory=list)
    wall: float = 0.0
    done_after: float | None = None
    lost: int = 0
    first_job: int = 0

    def quantile(self, q: int) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[q - 1]


class Children:
    """Child processes, each in its own session with its output in a log file; all stopped on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.processes = logs, {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, ready: Callable[[str], bool], timeout: float = 60) -> str:
        """Wait until ``ready(its log)``; fail with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready(output := self.log(name)):
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; the end of its log:\n{output[-2000:]}")
            time.sleep(0.05)
        return output

    def stop(self) -> None:
        """SIGTERM to each child (not its group: a Celery worker stops its own pool), then SIGKILL to the group."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signups", type=int, default=40, metavar="N", help="signups per mode (default: 40)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients sending at once (default: 4)")
    parser.add_argument("--crm-latency", type=float, default=0.5, metavar="S", help="seconds per CRM call (0.5)")
    parser.add_argument("--smtp-latency", type=float, default=0.2, metavar="S", help="seconds per email (0.2)")
    parser.add_argument("--failure-rate", type=float, default=0.2, help="share of CRM calls failing (0.2)")
    parser.add_argument("--workers", type=int, default=8, help="Celery worker processes (default: 8)")
    parser.add_argument("--timeout", type=float, default=60, metavar="S", help="longest wait for the side effects")
    parser.add_argument("--database-url", help="e.g. postgres://postgres@127.0.0.1:5432/example (default: SQLite)")
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/0 (default: a filesystem broker)")
    parser.add_argument("--serve", action="store_true", help="serve the signup page until Ctrl-C instead")
    parser.add_argument("--port", type=int, default=8000, help="the page's port with --serve (default: 8000)")
    options = parser.parse_args(argv)
    if options.signups < 2:
        parser.error("--signups must be at least 2 (the table gives a median and a p99)")
    if options.database_url:
        os.environ["DATABASE_URL"] = options.database_url
    if options.broker_url:
        os.environ["CELERY_BROKER_URL"] = options.broker_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    # Ctrl-C and SIGTERM end the demo through the finally clause that stops the children (SIGINT too when
    # the demo was started in the background, which inherits SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import django

    django.setup()
    from django.conf import settings

    data: Path = settings.DATA_DIR
    stamp = time.strftime("%Y%m%d-%H%M%S")
    children = Children(data / "logs")
    try:
        with step("migrating the database"):
            subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, check=True)
        with step("starting the SMTP sink, the CRM, a Celery worker, the relay and the web server"):
            maildir = data / f"mail-{stamp}"
            url = start(children, options, maildir)
        if options.serve:
            print(f"\n  Sign up at {url}/  (inline: {url}/?mode=inline; the admin: {url}/admin/)  Ctrl-C to stop\n")
            return children.processes["web"].wait()
        runs = [benchmark(mode, url, options, stamp) for mode in MODES]
        report(runs, options, maildir, children)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        children.stop()


@contextmanager
def step(text: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"  {text} …", end="", flush=True)
    yield
    print(f" {time.monotonic() - started:.1f} s", flush=True)


def start(children: Children, options: argparse.Namespace, maildir: Path) -> str:
    """Start every child; returns the web server's URL once all of them are ready."""
    manage = str(ROOT / "manage.py")
    children.start(
        "smtp", "-m", "example_project.services.smtp", "--port", "0", "--maildir", str(maildir),
        "--latency", str(options.smtp_latency),
    )  # fmt: skip
    children.start(
        "crm", "-m", "example_project.services.crm", "--port", "0",
        "--latency", str(options.crm_latency), "--failure-rate", str(options.failure_rate),
    )  # fmt: skip
    smtp_port = listening("smtp", children)
    crm_port = listening("crm", children)
    env = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port), "CRM_URL": f"http://127.0.0.1:{crm_port}"}
    children.start(
        "worker", "-m", "celery", "-A", "example_project", "worker", "-c", str(options.workers), "-l", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat", env=env,
    )  # fmt: skip
    children.start("relay", manage, "relay_outbox", "--interval", "1", env=env)
    port = options.port if options.serve else free_port()
    children.start("web", manage, "runserver", "--noreload", f"127.0.0.1:{port}", env=env)
    url = f"http://127.0.0.1:{port}"
    children.wait_for("web", lambda _: responds(url))
    children.wait_for("worker", lambda log: " ready." in log)
    os.environ["CRM_URL"] = env["CRM_URL"]
    return url


def listening(name: str, children: Children) -> int:
    line = children.wait_for(name, lambda log: "listening on" in log).split("listening on", 1)[1].splitlines()[0]
    return int(line.rsplit(":", 1)[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def responds(url: str) -> bool:
    try:
        return requests.get(f"{url}/", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def benchmark(mode: str, url: str, options: argparse.Namespace, stamp: str) -> Run:
    """Send the signups through the HTTP API, ``concurrency`` at a time; wait for the jobs they emitted."""
    from critical_path.models import Job

    first_job = (Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    run = Run(mode, first_job=first_job)
    bodies = [
        {"email": f"{mode}-{stamp}-{i}@example.com", "plan": "pro" if i % 4 == 0 else "free"}
        for i in range(options.signups)
    ]

    def post(body: dict[str, str]) -> tuple[float, dict[str, Any]]:
        started = time.monotonic()
        response = requests.post(f"{url}/api/signups/?mode={mode}", json=body, timeout=60)
        elapsed = time.monotonic() - started
        response.raise_for_status()
        return elapsed, response.json()

    started = time.monotonic()
    with ThreadPoolExecutor(options.concurrency) as pool:
        for count, (elapsed, answer) in enumerate(pool.map(post, bodies), 1):
            run.seconds.append(elapsed)
            run.lost += len(answer["lost"])
            progress(f"{mode}: {count}/{options.signups} signups answered")
    run.wall = time.monotonic() - started
    expected = 0 if mode == "inline" else 3 * options.signups
    jobs = Job.objects.filter(pk__gte=first_job)
    deadline = started + options.timeout
    while (done := jobs.filter(status__in=FINAL).count()) < expected and time.monotonic() < deadline:
        progress(f"{mode}: {count}/{options.signups} signups answered, {done}/{expected} side effects done")
        time.sleep(0.1)
    if done >= expected:
        run.done_after = time.monotonic() - started
    progress("")
    return run


def progress(text: str) -> None:
    if sys.stdout.isatty():
        print(f"\r  {text:<78}", end="" if text else "\r", flush=True)


def report(runs: list[Run], options: argparse.Namespace, maildir: Path, children: Children) -> None:
    from django.db.models import Count

    from critical_path.models import Job
    from example_project.services.smtp import count

    print(f"\n{options.signups} signups per mode, {options.concurrency} at a time, through POST /api/signups/")
    print(
        f"CRM: {options.crm_latency:g} s per call, {options.failure_rate:.0%} of calls fail; "
        f"SMTP: {options.smtp_latency:g} s per email\n"
    )
    print(f"{'mode':<15}{'median':>10}{'p99':>10}{'throughput':>15}   side effects done")
    for run in runs:
        if run.mode == "inline":
            done = "with each response"
        elif run.done_after is None:
            done = f"not within {options.timeout:g} s"
        else:
            done = f"{run.done_after:.1f} s after the first request"
        print(
            f"{run.mode:<15}{run.quantile(50) * 1000:>7.0f} ms{run.quantile(99) * 1000:>7.0f} ms"
            f"{options.signups / run.wall:>9.1f} req/s   {done}"
        )
    inline, critical = runs
    print(f"\nInline, {inline.lost} side effects failed and were lost (logged; nothing retries them).")

    ours = Job.objects.filter(pk__gte=critical.first_job)
    counts = dict(ours.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    retried = ours.filter(status="succeeded", attempts__gt=1).count()
    print(f"\nOutbox, the critical path's {sum(counts.values())} jobs:")
    print(f"  succeeded {counts.get('succeeded', 0):>5}   ({retried} of them after a retry)")
    print(f"  failed    {counts.get('failed', 0):>5}   (waiting for a retry)")
    print(f"  dead      {counts.get('dead', 0):>5}   (attempts exhausted; the CRM kept failing)")
    print(f"  coalesced {counts.get('coalesced', 0):>5}   (stats recomputations made moot by a newer one)")
    for status in sorted(set(counts) - {"succeeded", "failed", "dead", "coalesced"}):
        print(f"  {status:<9} {counts[status]:>5}")
    if counts.get("dead"):
        print("  Replay the dead ones: .venv/bin/python manage.py replay_dead_letters --yes")
        print("  (or select them in the admin, Critical path > Dead letters, and run Replay)")
    crm = requests.get(f"{os.environ['CRM_URL']}/stats", timeout=5).json()
    print(
        f"\nCRM: {crm['contacts']} contacts from {crm['requests']} requests ({crm['failed']} failed with 503, "
        f"{crm['repeated']} repeats answered from their idempotency key)"
    )
    print(f"SMTP sink: {count(maildir)} welcome emails received")
    if critical.done_after is not None and inline.quantile(50) > 0:
        print(
            f"\nThe critical path answered {inline.quantile(50) / critical.quantile(50):.0f}x faster at the median "
            f"and {options.signups / critical.wall / (options.signups / inline.wall):.0f}x the throughput."
        )
    logs = os.path.relpath(children.logs) if children.logs.is_relative_to(Path.cwd()) else children.logs
    print(f"\nLogs of the worker, relay, web server, CRM and SMTP sink: {logs}")


if __name__ == "__main__":
    sys.exit(main())
