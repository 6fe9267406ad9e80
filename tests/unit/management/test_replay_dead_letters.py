"""replay_dead_letters: selection, confirmation, dry run, batches, pace, canary, races, errors."""

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from critical_path.models import Job
from critical_path.operations import rollout
from critical_path.worker.delivery import deliver
from tests.factories import make_job
from tests.helpers import at_once

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def replay(*args, stdin=None):
    out = io.StringIO()
    call_command("replay_dead_letters", *args, stdout=out, stdin=stdin or io.StringIO())
    return out.getvalue()


def statuses():
    return dict(Job.objects.values_list("pk", "status"))


def ago(**delta):
    return timezone.now() - timedelta(**delta)


def test_replays_dead_jobs_only_by_default():
    dead = make_job(Job.Status.DEAD, attempts=3, finished_at=ago(hours=1))
    failed = make_job(Job.Status.FAILED, attempts=1, started_at=ago(hours=1))
    done = make_job(Job.Status.SUCCEEDED)
    output = replay("--yes")
    assert "1 replayed, 0 skipped" in output
    after = statuses()
    assert after[dead.pk] in (Job.Status.PENDING, Job.Status.ENQUEUED)
    assert (after[failed.pk], after[done.pk]) == (Job.Status.FAILED, Job.Status.SUCCEEDED)
    assert Job.objects.get(pk=dead.pk).attempts == 0


def test_status_failed_replays_failed_jobs_too():
    make_job(Job.Status.DEAD)
    make_job(Job.Status.FAILED, attempts=1)
    assert "2 replayed" in replay("--yes", "--status", "dead", "--status", "failed")


def test_filters_narrow_the_selection():
    keep = make_job(Job.Status.DEAD, effect="tests.effects.flaky", queue="mail", last_error="Timeout: smtp")
    others = [
        make_job(Job.Status.DEAD, effect="tests.effects.note", queue="mail", last_error="Timeout: smtp"),
        make_job(Job.Status.DEAD, effect="tests.effects.flaky", queue="crm", last_error="Timeout: smtp"),
        make_job(Job.Status.DEAD, effect="tests.effects.flaky", queue="mail", last_error="KeyError"),
    ]
    output = replay(
        "--yes", "--effect", "tests.effects.flaky", "--queue", "mail", "--error-contains", "Timeout"
    )  # fmt: skip
    assert "1 replayed" in output
    assert statuses()[keep.pk] != Job.Status.DEAD
    assert all(statuses()[job.pk] == Job.Status.DEAD for job in others)


def test_id_filter_is_repeatable():
    jobs = [make_job(Job.Status.DEAD) for _ in range(3)]
    assert "2 replayed" in replay("--yes", "--id", str(jobs[0].pk), "--id", str(jobs[2].pk))
    assert statuses()[jobs[1].pk] == Job.Status.DEAD


def test_since_and_until_use_the_dead_letter_time_and_the_failed_attempt_start():
    old_dead = make_job(Job.Status.DEAD, finished_at=ago(days=3))
    new_dead = make_job(Job.Status.DEAD, finished_at=ago(hours=1))
    new_failed = make_job(Job.Status.FAILED, started_at=ago(hours=1))
    old_failed = make_job(Job.Status.FAILED, started_at=ago(days=3))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert "2 replayed" in replay("--yes", "--status", "dead", "--status", "failed", "--since", since)
    after = statuses()
    assert (after[old_dead.pk], after[old_failed.pk]) == (Job.Status.DEAD, Job.Status.FAILED)
    assert Job.Status.DEAD not in (after[new_dead.pk], after[new_failed.pk])
    until = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert "2 replayed" in replay("--yes", "--status", "dead", "--status", "failed", "--until", until)


def test_limit_replays_the_oldest_ids_first():
    jobs = [make_job(Job.Status.DEAD) for _ in range(5)]
    assert "2 replayed" in replay("--yes", "--limit", "2", "--batch-size", "1")
    assert [statuses()[job.pk] == Job.Status.DEAD for job in jobs] == [False, False, True, True, True]


def test_database_option_replays_on_that_database():
    job = make_job(Job.Status.DEAD, using="other")
    make_job(Job.Status.DEAD)
    assert "1 replayed" in replay("--yes", "--database", "other")
    assert Job.objects.using("other").get(pk=job.pk).status != Job.Status.DEAD
    assert Job.objects.using("default").get().status == Job.Status.DEAD


def test_dry_run_shows_count_and_sample_and_changes_nothing():
    jobs = [make_job(Job.Status.DEAD, finished_at=ago(hours=1), last_error="Traceback\nValueError: nope")]
    jobs += [make_job(Job.Status.DEAD, finished_at=ago(hours=1)) for _ in range(11)]
    before = list(Job.objects.order_by("pk").values())
    output = replay("--dry-run")  # no --yes needed: nothing changes
    assert "Would replay 12 jobs" in output
    assert f"#{jobs[0].pk} tests.effects.note dead" in output and "ValueError: nope" in output
    assert f"#{jobs[11].pk} " not in output  # a sample of 10
    assert list(Job.objects.order_by("pk").values()) == before


def test_nothing_to_replay_says_so():
    assert "No jobs match" in replay("--yes")


def test_refuses_without_yes_when_stdin_is_not_a_terminal():
    job = make_job(Job.Status.DEAD)
    with pytest.raises(CommandError, match=r"stdin is not a terminal\. Pass --yes"):
        replay()
    assert statuses()[job.pk] == Job.Status.DEAD


def test_asks_on_a_terminal_and_replays_on_yes():
    job = make_job(Job.Status.DEAD)
    output = replay(stdin=FakeTTY("y\n"))
    assert "Replay 1 job on database 'default'? [y/N]" in output and "1 replayed" in output
    assert statuses()[job.pk] != Job.Status.DEAD


def test_asks_on_a_terminal_and_stops_on_anything_else():
    job = make_job(Job.Status.DEAD)
    assert "Cancelled" in replay(stdin=FakeTTY("\n"))
    assert statuses()[job.pk] == Job.Status.DEAD


def test_unknown_effect_is_refused_with_close_matches():
    make_job(Job.Status.DEAD, effect="tests.effects.always_fails")
    with pytest.raises(CommandError, match=r"Unknown side effect 'tests.effects.always_fail'.*always_fails"):
        replay("--yes", "--effect", "tests.effects.always_fail")


def test_a_path_only_finished_jobs_have_is_unknown():
    """Known paths are read from live and dead rows through their partial indexes, never from finished ones."""
    make_job(Job.Status.SUCCEEDED, effect="shop.effects.long_gone")
    with pytest.raises(CommandError, match=r"Unknown side effect 'shop.effects.long_gone': no live or dead job"):
        replay("--yes", "--effect", "shop.effects.long_gone")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "expected an ISO 8601 date"),
        (["--until", "2026-13-45"], "expected an ISO 8601 date"),
        (["--database", "nope"], "Unknown database alias 'nope'"),
        (["--limit", "0"], "expected a positive whole number"),
        (["--rate", "-1"], "expected a positive number"),
        (["--status", "succeeded"], "invalid choice"),
    ],
)
def test_bad_arguments_are_refused_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        replay("--yes", *args)


def test_two_replays_at_once_replay_each_job_once():
    ids = [make_job(Job.Status.DEAD).pk for _ in range(60)]
    outputs = at_once(*[lambda: replay("--yes", "--batch-size", "7")] * 2)
    assert all(isinstance(output, str) for output in outputs), outputs
    replayed = sum(int(output.rsplit("\n", 2)[-2].split(" replayed")[0]) for output in outputs)
    assert replayed == len(ids)
    assert not Job.objects.dead().exists()


def test_replay_streams_in_batches_with_a_fixed_query_count_per_batch():
    Job.objects.bulk_create(
        Job(effect="tests.effects.note", status=Job.Status.DEAD, max_attempts=3, queue="critical-path-tests-idle",
            created_at=timezone.now(), available_at=timezone.now())
        for _ in range(3000)
    )  # fmt: skip
    with CaptureQueriesContext(connections["default"]) as first:
        replay("--yes", "--batch-size", "500", "--limit", "1000")
    with CaptureQueriesContext(connections["default"]) as rest:
        replay("--yes", "--batch-size", "500")
    # A COUNT, then per batch: a keyset page of ids, BEGIN, SELECT … FOR UPDATE, UPDATE, COMMIT;
    # a last, empty page when the jobs fill the last batch.
    per_batch = 5
    assert len(first) <= 2 + 2 * per_batch
    assert len(rest) <= 2 + 4 * per_batch
    assert not Job.objects.dead().exists()


def test_schedule_paces_batches_at_the_rate():
    assert rollout.schedule(10, 500, 4) == [(0.0, 4), (1.0, 4), (2.0, 2)]
    assert rollout.schedule(1200, 500, None) == [(0.0, 500), (0.0, 500), (0.0, 200)]
    plan = rollout.schedule(50_000, 500, 100)
    assert len(plan) == 500 and plan[-1] == (499.0, 100)


def test_throttle_sleeps_until_each_batch_fits_the_rate():
    now, slept = [100.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    throttle = rollout.Throttle(4, clock=lambda: now[0], sleep=sleep)
    for done in (0, 4, 8):
        throttle.wait(done)
        now[0] += 0.25  # the batch itself takes a quarter second
    assert slept == [0.75, 0.75]
    assert now[0] == pytest.approx(102.25)


def test_a_batch_that_fails_is_counted_and_the_next_goes_on(monkeypatch):
    jobs = [make_job(Job.Status.DEAD) for _ in range(3)]
    real, calls = rollout.transitions.replay, []

    def replay_or_fail(ids, **kwargs):
        calls.append(ids)
        if len(calls) == 1:
            raise DatabaseError("boom")
        return real(ids, **kwargs)

    monkeypatch.setattr(rollout.transitions, "replay", replay_or_fail)
    first = jobs[0].pk
    with pytest.raises(
        CommandError, match=rf"^1 job could not be replayed: ids {first} to {first}: DatabaseError: boom$"
    ):
        replay("--yes", "--batch-size", "1")
    assert [statuses()[job.pk] == Job.Status.DEAD for job in jobs] == [True, False, False]


def test_rollout_replay_reports_each_batch_to_its_listener():
    for _ in range(3):
        make_job(Job.Status.DEAD)
    seen = []

    class Listener(rollout.Listener):
        def progressed(self, summary):
            seen.append(summary.handled)

    summary = rollout.replay(Job.objects.dead(), using="default", batch_size=2, listener=Listener())
    assert (summary.replayed, summary.skipped, summary.failed, summary.canary) == (3, 0, 0, None)
    assert seen == [2, 3]


def test_rate_option_replays_everything_in_paced_batches(monkeypatch):
    waits = []
    monkeypatch.setattr(rollout.Throttle, "wait", lambda self, done: waits.append((self.rate, done)))
    for _ in range(5):
        make_job(Job.Status.DEAD)
    assert "5 replayed" in replay("--yes", "--rate", "2")
    assert waits == [(2.0, 0), (2.0, 2), (2.0, 4)]


def deliver_pending(stop):
    """Stands in for a worker: runs each job as soon as it is pending."""
    while not stop.is_set():
        for pk in Job.objects.filter(status__in=[Job.Status.PENDING, Job.Status.ENQUEUED]).values_list("pk", flat=True):
            deliver(pk, "default")
        stop.wait(0.02)
    connections.close_all()


@pytest.fixture
def worker_thread():
    stop = threading.Event()
    thread = threading.Thread(target=deliver_pending, args=(stop,))
    thread.start()
    yield
    stop.set()
    thread.join(10)


def test_canary_succeeds_then_the_rest_is_replayed(worker_thread):
    jobs = [make_job(Job.Status.DEAD, effect="tests.effects.note") for _ in range(5)]
    output = replay("--yes", "--canary", "2", "--canary-timeout", "20")
    assert "Canary succeeded: 2 jobs" in output and "5 replayed" in output
    assert not Job.objects.filter(pk__in=[job.pk for job in jobs]).dead().exists()


def test_canary_failure_stops_and_names_the_failed_jobs(worker_thread):
    jobs = [make_job(Job.Status.DEAD, effect="tests.effects.always_fails", args=[]) for _ in range(5)]
    with pytest.raises(CommandError, match=f"Canary failed: jobs {jobs[0].pk}, {jobs[1].pk} did not succeed"):
        replay("--yes", "--canary", "2", "--canary-timeout", "20")
    assert [job.pk for job in Job.objects.dead().order_by("pk")] == [job.pk for job in jobs[2:]]


def test_canary_timeout_stops_and_names_the_unfinished_jobs():
    jobs = [make_job(Job.Status.DEAD) for _ in range(3)]
    with pytest.raises(CommandError, match=f"Canary timed out after 0.2 s: jobs {jobs[0].pk} have not finished"):
        replay("--yes", "--canary", "1", "--canary-timeout", "0.2")
    assert Job.objects.dead().count() == 2


def test_progress_shows_a_bar_on_a_terminal(monkeypatch):
    for _ in range(3):
        make_job(Job.Status.DEAD)
    out = FakeTTY()
    call_command("replay_dead_letters", "--yes", "--batch-size", "1", stdout=out)
    assert "\r[##########....................] 1/3 (33%)" in out.getvalue()


def test_progress_prints_plain_lines_otherwise():
    for _ in range(3):
        make_job(Job.Status.DEAD)
    output = replay("--yes", "--batch-size", "1")
    assert "1/3 (33%)\n2/3 (67%)\n3/3 (100%)\n" in output
