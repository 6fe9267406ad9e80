"""A fake CRM: one HTTP endpoint with configurable latency and failure rate, idempotent on a header.

python -m example_project.services.crm --port 0 --latency 0.5 --failure-rate 0.2

``POST /contacts`` (JSON) creates a contact, answering 201; a request repeating an ``Idempotency-Key`` it
has already honoured answers 200 with the same contact, and creates nothing. With the failure rate, a
request fails with 503 before it does anything, as an overloaded service does. ``GET /stats`` counts it all.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CRM:
    """The CRM's state: contacts by idempotency key, and counters the demo reads."""

    def __init__(self, latency: float, failure_rate: float) -> None:
        self.latency, self.failure_rate = latency, failure_rate
        self.contacts: dict[str, dict[str, Any]] = {}
        self.counts = {"requests": 0, "created": 0, "repeated": 0, "failed": 0}
        self.lock = threading.Lock()

    def upsert(self, key: str, contact: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.counts["requests"] += 1
            if random.random() < self.failure_rate:
                self.counts["failed"] += 1
                return 503, {"error": "temporarily unavailable"}
            if key in self.contacts:
                self.counts["repeated"] += 1
                return 200, self.contacts[key]
            self.counts["created"] += 1
            self.contacts[key] = {"id": len(self.contacts) + 1, **contact}
            return 201, self.contacts[key]


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API would

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.server.crm.latency)
        key = self.headers.get("Idempotency-Key")
        if self.path != "/contacts":
            self.reply(404, {"error": "not found"})
        elif not key:
            self.reply(400, {"error": "the Idempotency-Key header is required"})
        else:
            self.reply(*self.server.crm.upsert(key, json.loads(body or b"{}")))

    def do_GET(self) -> None:
        if self.path == "/stats":
            with self.server.crm.lock:
                self.reply(200, {**self.server.crm.counts, "contacts": len(self.server.crm.contacts)})
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo reads /stats, not an access log."""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], crm: CRM) -> None:
        super().__init__(address, Handler)
        self.crm = crm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each request takes")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of requests failing with 503")
    options = parser.parse_args(argv)
    server = Server((options.host, options.port), CRM(options.latency, options.failure_rate))
    print(f"listening on http://{options.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
