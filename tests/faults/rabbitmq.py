"""A RabbitMQ node of the test's own, beside (never touching) any other node on the host."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.faults.servers import Server, accepts, as_user, free_port, owned_directory


def rabbitmq_bin() -> Path:
    """RabbitMQ's own scripts; Debian's /usr/sbin wrappers switch user and drop the node's environment."""
    if Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return Path("/usr/lib/rabbitmq/bin")
    server = shutil.which("rabbitmq-server")
    assert server, "rabbitmq-server was not found"
    return Path(server).parent


class RabbitMQNode(Server):
    """A RabbitMQ node of its own: its name, ports, cookie, configuration and data; no plugins.

    It registers with the host's epmd like any node, and touches no other node.
    """

    name = "rabbitmq"

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        super().__init__(directory or owned_directory("critical-path-rabbitmq-", "rabbitmq"), port)
        self.bin = rabbitmq_bin()
        self.node = f"critical-path-{uuid.uuid4().hex[:8]}@localhost"
        self.dist_port = free_port()
        files = {
            "rabbitmq.conf": f"listeners.tcp.1 = 127.0.0.1:{self.port}\n",
            "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "",
        }
        for name, text in files.items():
            (self.directory / name).write_text(text)
            if os.geteuid() == 0:
                shutil.chown(self.directory / name, "rabbitmq", "rabbitmq")

    def variables(self) -> dict[str, str]:
        here = self.directory
        return {
            "HOME": str(here),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(here / "mnesia"),
            "RABBITMQ_LOG_BASE": str(here / "log"),
            "RABBITMQ_PID_FILE": str(here / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(here / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(here / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(here / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(here / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def tool(self, name: str) -> list[str]:
        # runuser resets part of the environment, so the node's variables are given with env(1).
        variables = [f"{key}={value}" for key, value in self.variables().items()]
        return [*as_user("rabbitmq"), "env", *variables, str(self.bin / name)]

    def command(self) -> list[str]:
        return self.tool("rabbitmq-server")

    def ready(self) -> bool:
        from kombu import Connection

        if not accepts(self.port):
            return False
        try:
            with Connection(self.url, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception:
            return False
        return True

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def shut_down(self, timeout: float) -> None:
        """``rabbitmqctl stop``: the node shuts down cleanly."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([*self.tool("rabbitmqctl"), "-n", self.node, "stop"], capture_output=True, timeout=timeout)

    def close(self) -> None:
        self.kill()  # quicker than rabbitmqctl stop, and the node's data goes with it
        shutil.rmtree(self.directory, ignore_errors=True)

    def queue_length(self, queue: str) -> int:
        """Messages ready in a queue."""
        from kombu import Connection

        with Connection(self.url, connect_timeout=2) as connection:
            return connection.default_channel.queue_declare(queue, passive=True).message_count

    def flush_queue(self, queue: str) -> int:
        """Drop a queue's ready messages (``queue.purge``), as a broker that loses them would; returns how many."""
        from kombu import Connection

        with Connection(self.url, connect_timeout=2) as connection:
            return connection.default_channel.queue_purge(queue) or 0
