"""The relay's recovery work on fabricated crashed state: rescue, republish, outages, heartbeats, exclusivity."""

import fcntl
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.utils import timezone

from critical_path.exceptions import RelayBusy
from critical_path.models import Job, RelayHeartbeat
from critical_path.publishing.publisher import Publisher
from critical_path.relay import passes as relay
from critical_path.worker import outcomes
from tests.factories import make_job
from tests.helpers import ROOT, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture(autouse=True)
def _slow_retries(settings):
    """A rescued job's retry is not due within the pass that rescued it, however slow the machine."""
    settings.CRITICAL_PATH_RETRY_BACKOFF = 60


def ago(seconds):
    return timezone.now() - timedelta(seconds=seconds)


def reload(job):
    return Job.objects.using(job._state.db).get(pk=job.pk)


class DownPublisher(Publisher):
    """A broker that takes nothing: what Publisher reports for a refused or timed-out connection."""

    def publish(self, handoffs):
        return []


# Rescue: running past the lease.


def test_running_job_past_its_lease_is_rescued_to_failed_with_the_error_noted():
    lost = make_job(Job.Status.RUNNING, attempts=1, started_at=ago(400), lease_expires_at=ago(20))
    alive = make_job(Job.Status.RUNNING, attempts=1, started_at=ago(10), lease_expires_at=ago(-300))
    result = relay.run_once("default")
    assert (result.rescued, result.dead) == (1, 0)
    lost = reload(lost)
    assert lost.status == Job.Status.FAILED and lost.attempts == 1 and lost.lease_expires_at is None
    assert lost.last_error.startswith("WorkerLostError: attempt 1 lost its worker")
    assert "rescued by the relay" in lost.last_error
    [entry] = lost.error_history
    assert entry["attempt"] == 1 and entry["error"] == lost.last_error
    assert lost.available_at > timezone.now()  # retried after the usual backoff
    assert reload(alive).status == Job.Status.RUNNING


def test_rescue_at_max_attempts_dead_letters():
    job = make_job(
        Job.Status.RUNNING,
        attempts=3,
        lease_expires_at=ago(20),
        error_history=[{"attempt": 2, "error": "RuntimeError: earlier", "started_at": None, "traceback": ""}],
    )
    result = relay.run_once("default")
    assert (result.rescued, result.dead) == (0, 1)
    job = reload(job)
    assert job.status == Job.Status.DEAD and job.finished_at is not None
    assert [entry["attempt"] for entry in job.error_history] == [3, 2]


def test_rescued_job_is_published_again_once_its_backoff_passes(settings):
    # Due after the relay's next pass, so not handed off ahead of its time.
    settings.CRITICAL_PATH_RETRY_BACKOFF = settings.CRITICAL_PATH_RETRY_BACKOFF_MAX = 200
    job = make_job(Job.Status.RUNNING, attempts=1, lease_expires_at=ago(20))
    assert relay.run_once("default").published_ids == []
    assert reload(job).status == Job.Status.FAILED
    Job.objects.filter(pk=job.pk).update(available_at=ago(20))  # its backoff passes
    assert relay.run_once("default").published_ids == [job.pk]
    assert reload(job).status == Job.Status.ENQUEUED


def test_rescue_does_not_overwrite_a_worker_that_recorded_its_outcome_first():
    job = make_job(Job.Status.RUNNING, attempts=1, lease_expires_at=ago(20))
    # The worker records success between the relay's read and its UPDATE: the compare-and-set misses.
    Job.objects.filter(pk=job.pk).succeed(1)

    assert outcomes.rescue(job) == outcomes.Outcome.SKIPPED
    assert reload(job).status == Job.Status.SUCCEEDED


# Republish: enqueued too long, the message taken for lost.


def test_stuck_enqueued_jobs_are_republished_with_a_backoff_per_job(settings):
    settings.CRITICAL_PATH_REPUBLISH_AFTER = 600
    settings.CRITICAL_PATH_REPUBLISH_AFTER_MAX = 3600
    rows = {
        "never republished, 11 min": make_job(Job.Status.ENQUEUED, enqueued_at=ago(660)),
        "never republished, 5 min": make_job(Job.Status.ENQUEUED, enqueued_at=ago(300)),
        "once, 15 min (waits 20)": make_job(Job.Status.ENQUEUED, enqueued_at=ago(900), republished=1),
        "once, 25 min": make_job(Job.Status.ENQUEUED, enqueued_at=ago(1500), republished=1),
        "twice, 30 min (waits 40)": make_job(Job.Status.ENQUEUED, enqueued_at=ago(1800), republished=2),
        "many times, 61 min (capped at 60)": make_job(Job.Status.ENQUEUED, enqueued_at=ago(3660), republished=20),
        "many times, 50 min": make_job(Job.Status.ENQUEUED, enqueued_at=ago(3000), republished=20),
        "running": make_job(Job.Status.RUNNING, enqueued_at=ago(3660), lease_expires_at=ago(-300)),
    }
    before = timezone.now()
    result = relay.run_once("default")
    after = {job.pk: job for job in Job.objects.all()}
    moved = {name for name, job in rows.items() if after[job.pk].republished != job.republished}
    assert moved == {"never republished, 11 min", "once, 25 min", "many times, 61 min (capped at 60)"}
    assert result.republished == 3 and result.published == 0
    for name in moved:
        job = after[rows[name].pk]
        assert job.republished == rows[name].republished + 1
        assert job.enqueued_at >= before - timedelta(seconds=1)
        assert job.status == Job.Status.ENQUEUED and job.attempts == 0
    # Just republished: the next pass leaves them alone.
    assert relay.run_once("default").republished == 0


def test_replay_resets_the_republish_count():
    job = make_job(Job.Status.DEAD, republished=4)
    assert Job.objects.filter(pk=job.pk).replay() == 1
    assert reload(job).republished == 0


# Outages.


def test_broker_down_leaves_rows_as_they_were_and_costs_no_attempt():
    pending = make_job(created_at=ago(60), available_at=ago(60))
    failed = make_job(Job.Status.FAILED, attempts=1, available_at=ago(20))
    stuck = make_job(Job.Status.ENQUEUED, enqueued_at=ago(3600))
    lost = make_job(Job.Status.RUNNING, attempts=1, lease_expires_at=ago(20))
    result = relay.run_once("default", publisher=DownPublisher())
    assert result.broker_down and (result.published, result.republished) == (0, 0)
    assert result.rescued == 1  # rescue needs only the database
    assert reload(pending).status == Job.Status.PENDING
    assert (reload(failed).status, reload(failed).attempts) == (Job.Status.FAILED, 1)
    assert (reload(stuck).status, reload(stuck).republished) == (Job.Status.ENQUEUED, 0)
    assert reload(lost).status == Job.Status.FAILED
    [beat] = RelayHeartbeat.objects.all()
    assert beat.errors == 1 and beat.last_error == "broker unreachable" and beat.last_error_at is not None


def test_loop_backs_off_while_the_broker_is_down():
    make_job(created_at=ago(60), available_at=ago(60))
    relayer = relay.Relay(["default"])
    relayer.publisher = DownPublisher()
    stop = threading.Event()
    waits = []
    stop.wait = waits.append  # record the waits instead of waiting
    passes = relayer.serve(1.0, stop)
    for _ in range(4):
        assert next(passes)[0].broker_down
    assert waits == [2.0, 4.0, 8.0]
    stop.set()
    assert next(passes, None) is None


@pytest.mark.skipif(
    "connections['default'].vendor != 'postgresql'", reason="statement and lock timeouts are PostgreSQL's"
)
def test_a_locked_table_makes_the_pass_fail_fast_and_recover(settings):
    settings.CRITICAL_PATH_RELAY_DATABASE_TIMEOUT = 0.2
    job = make_job(created_at=ago(60), available_at=ago(60))
    blocker = connections.create_connection("default")
    try:
        blocker.set_autocommit(False)
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLE critical_path_job IN ACCESS EXCLUSIVE MODE")
        result = relay.run_once("default")
        assert "timeout" in result.error and result.published == 0
    finally:
        blocker.rollback()
        blocker.close()
    assert relay.run_once("default").published_ids == [job.pk]


# Heartbeats.


def test_each_pass_counts_in_the_relays_heartbeat(settings):
    settings.CRITICAL_PATH_RETRY_BACKOFF = settings.CRITICAL_PATH_RETRY_BACKOFF_MAX = 200  # the rescued retry waits
    make_job(created_at=ago(60), available_at=ago(60))
    make_job(Job.Status.RUNNING, attempts=1, lease_expires_at=ago(20))
    relay.run_once("default")
    relay.run_once("default")
    [beat] = RelayHeartbeat.objects.all()
    assert beat.name == f"{os.uname().nodename}:{os.getpid()}"
    assert (beat.passes, beat.published, beat.rescued, beat.errors) == (2, 1, 1, 0)
    assert beat.last_run_at >= beat.started_at
    assert not RelayHeartbeat.objects.using("other").exists()


def test_heartbeats_of_relays_long_gone_are_deleted():
    RelayHeartbeat.objects.create(name="gone:1", started_at=ago(30 * 86400), last_run_at=ago(8 * 86400))
    RelayHeartbeat.objects.create(name="resting:2", started_at=ago(30 * 86400), last_run_at=ago(86400))
    relay.run_once("default")
    assert RelayHeartbeat.objects.filter(name="resting:2").exists()
    assert not RelayHeartbeat.objects.filter(name="gone:1").exists()


# One relay at a time on SQLite.


@pytest.fixture
def sqlite_relay_lock():
    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("relays share PostgreSQL through SKIP LOCKED")
    path = f"{connection.settings_dict['NAME']}.relay-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another relay process would
    yield path
    os.close(fd)


def test_second_relay_on_sqlite_is_refused_with_a_clear_message(sqlite_relay_lock):
    make_job(created_at=ago(60), available_at=ago(60))
    with pytest.raises(RelayBusy, match="Another relay is running on database 'default'"):
        relay.run_once("default")
    with pytest.raises(CommandError, match="SQLite runs one relay at a time"):
        call_command("relay_outbox", "--once", "--database", "default")
    assert Job.objects.get().status == Job.Status.PENDING


# The loop: interval, stop, SIGTERM.


def test_loop_relays_until_stopped():
    relayer = relay.Relay(["default", "other"])
    stop = threading.Event()
    seen = []

    def serve():
        try:
            for results in relayer.serve(0.05, stop):
                seen.append(results)
        finally:
            connections.close_all()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        job = make_job(using="other", created_at=ago(60), available_at=ago(60))
        wait_for(lambda: reload(job).status == Job.Status.ENQUEUED, timeout=10, message="relayed")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [result.database for result in seen[0]] == ["default", "other"]


def test_command_stops_cleanly_on_sigterm(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CRITICAL_PATH_TEST_WORKER": "1"}
    job = make_job(created_at=ago(60), available_at=ago(60))
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "relay_outbox", "--interval", "0.1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: reload(job).status == Job.Status.ENQUEUED, timeout=30, message="relayed")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM: finishing the current batch, then stopping." in err
    assert "default: 1 published" in out and out.rstrip().endswith("Relay stopped.")


def test_command_output_for_one_pass():
    make_job(created_at=ago(60), available_at=ago(60))
    make_job(Job.Status.RUNNING, attempts=3, lease_expires_at=ago(20))
    out = StringIO()
    call_command("relay_outbox", "--once", "--database", "default", stdout=out)
    assert out.getvalue() == "default: 1 published, 0 republished, 0 rescued, 1 dead-lettered.\n"
