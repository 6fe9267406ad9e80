"""An SMTP sink: a real SMTP server (aiosmtpd) that keeps what it receives in a Maildir.

python -m example_project.services.smtp --port 0 --latency 0.2 --maildir .demo-data/mail

``--latency`` delays each message's acceptance, as a remote mail provider does.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class Maildir:
    """aiosmtpd handler: store each message, after the configured latency."""

    def __init__(self, path: Path, latency: float) -> None:
        self.mailbox = mailbox.Maildir(path, create=True)
        self.latency = latency

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.latency)
        self.mailbox.add(envelope.original_content)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each message is accepted")
    parser.add_argument("--maildir", type=Path, default=Path(".demo-data/mail"))
    options = parser.parse_args(argv)
    port = options.port or free_port(options.host)
    controller = Controller(Maildir(options.maildir, options.latency), hostname=options.host, port=port)
    controller.start()
    print(f"listening on smtp://{options.host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


def free_port(host: str) -> int:
    """A port free now (aiosmtpd's controller cannot bind port 0: it connects to its port to check it is up)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def count(path: Path) -> int:
    """Distinct messages in the Maildir, by Message-ID: a retried send with the same id counts once."""
    return len({message["Message-ID"] for message in mailbox.Maildir(path, create=True)})


if __name__ == "__main__":
    sys.exit(main())
