import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from critical_path.publishing import dispatcher as dispatch
from tests.helpers import wait_for
from tests.support.processes import Launcher

ROOT = Path(__file__).resolve().parent.parent

# tests/unit/test_testing.py runs a project's pytest session through pytester.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session", autouse=True)
def _clean_broker(django_db_setup):
    """Start each session with empty test queues; fail (not skip) if the broker is unreachable."""
    options = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if django_settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(options["data_folder_in"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    else:
        from tests.celery_app import app

        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            connection.default_channel.queue_purge(django_settings.CRITICAL_PATH_DEFAULT_QUEUE)
    yield


@pytest.fixture(autouse=True)
def _stop_dispatcher():
    """Each test ends with its dispatcher flushed and stopped, so no thread outlives its test's data."""
    yield
    assert dispatch.shutdown(timeout=10), "the dispatcher did not stop"


class Worker:
    def __init__(self, queue: str, log: Path, process: subprocess.Popen):
        self.queue, self.log, self.process = queue, log, process

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def worker(django_db_setup, tmp_path_factory):
    """A real Celery worker (prefork, 2 processes) on the test databases and broker, on its own queue."""
    queue = f"critical-path-tests-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CRITICAL_PATH_TEST_WORKER": "1",
        "CRITICAL_PATH_TEST_QUEUE": queue,
    }
    command = [
        sys.executable, "-m", "celery", "-A", "tests", "worker", "-Q", queue, "-c", "2", "-P", "prefork",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO", "-n", f"{queue}@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Worker(queue, log, process)
    try:
        wait_for(
            lambda: " ready." in running.output() or process.poll() is not None, timeout=60, message="worker ready"
        )
        assert process.poll() is None, running.output()
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


@pytest.fixture
def worker_queue(worker, settings):
    """Route this test's side effects to the worker's queue."""
    settings.CRITICAL_PATH_DEFAULT_QUEUE = worker.queue
    return worker.queue


@pytest.fixture
def launch(django_db_setup, tmp_path, settings):
    """Starts workers, relays and emitters (see ``Launcher``) on the test databases; stops them all at the end.

    Side effects this process emits go to the launcher's queue, as the processes' do.
    """
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    launcher = Launcher(log_dir)
    settings.CRITICAL_PATH_DEFAULT_QUEUE = launcher.queue
    try:
        yield launcher
    finally:
        launcher.close()
