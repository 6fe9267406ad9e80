"""Statements and commits per job on critical_path's happy path: emit, hand-off, claim, outcome.

Run by ``benchmarks.throughput`` (``--statement-jobs``). Signups at a fixed rate,
three ``after_commit`` jobs each, the dispatcher handing them off in this process;
then a Celery worker (prefork, ``--concurrency``) runs them. Counted twice:

  by the client   every process records each statement its Django connections
                  send (``execute_wrappers``, installed on each connection by the
                  ``connection_created`` signal) and each commit: a ``commit()``
                  (the end of an ``atomic()`` block) or a statement run in
                  autocommit, which commits by itself; by part: the request
                  thread, the dispatcher's thread, the worker's pool and main
                  processes. What Django sends while connecting (its time zone)
                  goes round the wrappers and is not counted here.
  by PostgreSQL   ``pg_stat_database``'s ``xact_commit`` and ``sessions`` of the
                  benchmark's database, read from another database once every
                  connection to it has closed (a backend flushes its counters
                  when it exits): all transactions and connections, connecting
                  included; the emitting process's include each signup's own
                  transaction (one per three jobs).

``pg_stat_statements`` would count on the server alone, but needs
``shared_preload_libraries`` and a restart, which a shared server may not allow.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: Set in a process's environment, it records there (the worker's, by ``benchmarks.celery_app``).
LOG_ENV = "BENCH_STATEMENTS_LOG"
#: Threads whose statements are reported apart, by their name.
THREADS = {"critical_path.dispatcher": "hand-off (dispatcher thread)"}


class Recorder:
    """Appends one line per statement and per commit of this process's Django connections to a file."""

    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self.lock = threading.Lock()
        self.pid = -1
        self.out: Any = None
        self.connections: list[Any] = []

    def connected(self, sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
        if getattr(connection, "_bench_recorded", False):  # the same wrapper, connected anew
            self.write("connect", "")
            return
        connection._bench_recorded = True
        self.connections.append(connection)
        connection.execute_wrappers.append(self.execute)
        commit = connection.commit

        def counted_commit() -> None:
            self.write("commit", "")
            commit()

        connection.commit = counted_commit
        self.write("connect", "")

    def execute(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        connection = context["connection"]
        alone = not connection.in_atomic_block and connection.get_autocommit()
        self.write("statement, autocommit" if alone else "statement", shape(sql))
        return execute(sql, params, many, context)

    def write(self, kind: str, sql: str) -> None:
        thread = threading.current_thread().name
        role = THREADS.get(thread, self.role)
        with self.lock:
            if self.pid != os.getpid():  # first use, or a forked pool process: a file object of its own
                self.pid = os.getpid()
                self.out = self.path.open("a", buffering=1)
            self.out.write(f"{self.pid}\t{role}\t{kind}\t{sql}\n")

    def uninstall(self) -> None:
        """Stop recording: the signal disconnected, the wrappers taken off the connections that have them."""
        from django.db.backends.signals import connection_created

        connection_created.disconnect(dispatch_uid="benchmarks.statements")
        for connection in self.connections:
            connection.execute_wrappers.remove(self.execute)
            del connection.commit, connection._bench_recorded  # the class's commit() again
        if self.out is not None:
            self.out.close()


def install(path: Path, role: str) -> Recorder:
    """Record every statement and commit of the connections this process opens from now on."""
    from django.db.backends.signals import connection_created

    recorder = Recorder(path, role)
    connection_created.connect(recorder.connected, weak=False, dispatch_uid="benchmarks.statements")
    return recorder


def install_from_environment() -> None:
    """Record in this process if ``BENCH_STATEMENTS_LOG`` names a file (a worker started for the count)."""
    path = os.environ.get(LOG_ENV)
    if path:
        install(Path(path), "worker")


def shape(sql: str) -> str:
    """A statement's shape: column and value lists elided, ``IN`` lists folded, at most 160 characters."""
    text = " ".join(sql.split())
    update = re.match(r"^UPDATE (\S+) SET (.*?) WHERE (.*)$", text)
    if update:  # the columns set, and those the WHERE clause reads
        columns = ", ".join(re.findall(r'(?:^|, )"(\w+)" = ', update[2]))
        read = ", ".join(dict.fromkeys(re.findall(r'"(\w+)" (?:=|IN|<|>|IS)', update[3])))
        text = f"UPDATE {update[1]} SET {columns} WHERE {read} …"
    text = re.sub(r"^SELECT .*? FROM ", "SELECT … FROM ", text)
    text = re.sub(r"^(INSERT INTO \S+) \(.*?\) (VALUES|SELECT)", r"\1 (…) \2", text)
    text = re.sub(r"VALUES \(.*?\)(, \(.*?\))*( ON| RETURNING|$)", r"VALUES (…)\2", text)
    text = re.sub(r"RETURNING .*$", "RETURNING …", text)
    text = re.sub(r"%s(, %s)+", "%s, …", text)
    return text[:160]


def server_counts(dbname: str) -> dict[str, int]:
    """``xact_commit``, ``xact_rollback`` and ``sessions`` of ``dbname``, once no connection to it is left.

    Read from the server's ``postgres`` database, so reading adds nothing. A backend flushes its counters
    as it exits, so this waits (bounded) for the last one to go and the counters to settle.
    """
    import psycopg

    query = "SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database WHERE datname = %s"
    with psycopg.connect(os.environ["BENCH_DATABASE_URL"], dbname="postgres", autocommit=True) as admin:
        deadline = time.monotonic() + 30
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname]).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise SystemExit(f"connections to {dbname} stayed open: the counts cannot be read")
            time.sleep(0.1)
        last = None
        while True:  # settled: the same twice, 0.3 s apart
            admin.execute("SELECT pg_stat_clear_snapshot()")
            row = admin.execute(query, [dbname]).fetchone()
            if row == last or time.monotonic() > deadline:
                break
            last = row
            time.sleep(0.3)
    assert row is not None
    return {"commits": int(row[0]), "rollbacks": int(row[1]), "sessions": int(row[2])}


def happy_path(jobs: int, rate: float, concurrency: int, folder: Path, log: Path) -> dict[str, Any]:
    """Emit about ``jobs`` jobs (three per signup, ``rate`` signups per second), run them; count what each costs."""
    import redis
    from celery import current_app
    from django.db import connection, transaction

    from benchmarks.benchapp.effects import recompute_stats, send_welcome_email, sync_crm
    from benchmarks.benchapp.models import Signup
    from benchmarks.throughput import celery_worker
    from critical_path.models import Job
    from critical_path.publishing import dispatcher

    path = folder / "statements.log"
    dbname = connection.settings_dict["NAME"]
    Job.objects.all().delete()
    connection.close()
    recorder = install(path, "request thread")
    signups = max(1, round(jobs / 3))
    start = server_counts(dbname)
    next_start = time.perf_counter()
    for _ in range(signups):
        next_start += 1 / rate  # open loop, as the load and commit-to-start measurements run
        time.sleep(max(0.0, next_start - time.perf_counter()))
        with transaction.atomic():
            signup = Signup.objects.create(email="ada@example.com")
            send_welcome_email.after_commit(signup.pk)
            sync_crm.after_commit(signup.pk)
            recompute_stats.after_commit()
    dispatcher.shutdown(timeout=30)  # the last hand-offs marked, its connection closed
    connection.close()
    emitted = server_counts(dbname)
    client = redis.Redis.from_url(current_app.conf.broker_url)
    os.environ[LOG_ENV] = str(path)
    try:
        with celery_worker(concurrency, log) as process:
            worker_pid = process.pid
            deadline = time.monotonic() + max(120.0, jobs / 10)
            while client.llen("bench") or client.hlen("unacked"):  # kombu's Redis transport: queue, unacked
                if time.monotonic() > deadline:
                    raise SystemExit("the jobs were not all run: see the worker's log")
                time.sleep(0.05)
    finally:
        os.environ.pop(LOG_ENV)
        client.close()
    ran = server_counts(dbname)
    recorder.uninstall()
    total = 3 * signups
    succeeded = Job.objects.filter(status=Job.Status.SUCCEEDED).count()
    Job.objects.all().delete()
    if succeeded != total:
        raise SystemExit(f"{succeeded} of {total} jobs succeeded: see the worker's log")
    parts: dict[str, Counter[tuple[str, str]]] = {}
    for line in path.read_text().splitlines():
        pid, role, kind, sql = line.split("\t", 3)
        if role == "worker":
            role = "worker main process" if int(pid) == worker_pid else "worker pool processes"
        parts.setdefault(role, Counter())[(kind, sql)] += 1
    result: dict[str, Any] = {"jobs": total, "signups": signups, "rate": rate, "parts": {}}
    for role, counts in parts.items():
        statements = {
            f"{kind}: {sql}": n / total for (kind, sql), n in counts.most_common() if kind.startswith("statement")
        }
        result["parts"][role] = {
            "statements_per_job": sum(n for (kind, _), n in counts.items() if kind.startswith("statement")) / total,
            "commits_per_job": sum(n for (kind, _), n in counts.items() if kind != "statement" and kind != "connect")
            / total,
            "connects_per_job": counts[("connect", "")] / total,
            "statements": statements,
        }
    result["server"] = {
        "emitting process": {name: (emitted[name] - start[name]) / total for name in start},
        "worker": {name: (ran[name] - emitted[name]) / total for name in start},
    }
    print(f"statements per job: {result}", file=sys.stderr)
    return result


def report(data: dict[str, Any]) -> list[str]:
    """The markdown lines of ``happy_path``'s counts."""
    lines = [
        f"Statements and commits per job on the happy path: {data['jobs']} jobs, {data['signups']} signups at "
        f"{data['rate']:g}/s (three jobs each), then the worker. Counted by the client (each Django connection's "
        "statements and commits; a statement in autocommit commits by itself) and by PostgreSQL "
        "(`pg_stat_database`: every transaction and connection, the signups' own transactions included).",
        "",
        "| part | statements per job | commits per job | connections per job |",
        "|---|---|---|---|",
    ]
    for role, part in data["parts"].items():
        lines.append(
            f"| {role} | {part['statements_per_job']:.2f} | {part['commits_per_job']:.2f} "
            f"| {part['connects_per_job']:.3f} |"
        )
    for role, counts in data["server"].items():
        lines.append(
            f"| {role}, by PostgreSQL | | {counts['commits']:.2f} (rolled back: {counts['rollbacks']:.2f}) "
            f"| {counts['sessions']:.3f} |"
        )
    lines += ["", "| part | statement (shape) | per job |", "|---|---|---|"]
    for role, part in data["parts"].items():
        for statement, per_job in part["statements"].items():
            cell = statement.replace("|", "\\|")
            lines.append(f"| {role} | `{cell}` | {per_job:.3f} |")
    return lines
