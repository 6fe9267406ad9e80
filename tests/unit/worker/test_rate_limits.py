"""Rate limits: one token bucket per side effect in the database, shared by every worker; a fake clock drives it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from critical_path import side_effect
from critical_path.exceptions import InvalidOption
from critical_path.models import Job, RateLimit, now_plus
from critical_path.outbox.options import Rate
from critical_path.publishing import dispatcher as dispatch
from critical_path.worker import delivery, rate_limits
from critical_path.worker.outcomes import Outcome
from tests.effects import throttled
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/m", Rate(100, timedelta(minutes=1))),
        ("5/s", Rate(5, timedelta(seconds=1))),
        (" 1 / h ", Rate(1, timedelta(hours=1))),
    ],
)
def test_rates_parse(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("value", ["100", "0/m", "-1/m", "100/d", "1.5/s", "100/min", 100, ""])
def test_a_bad_rate_is_refused_at_declaration(value):
    with pytest.raises(InvalidOption, match=r'rate must be a str "<count>/<s\|m\|h>"'):
        side_effect(rate=value)(at)


def test_the_limiter_allows_one_run_per_interval_and_tells_when_the_next_is_due():
    rate = Rate(3, timedelta(minutes=1))  # one every 20 s
    taken = [rate_limits.take("e", rate, using="default", now=at(0)) for _ in range(3)]
    assert taken == [None, at(20), at(20)]  # over the limit: rescheduled, nothing taken
    assert rate_limits.take("e", rate, using="default", now=at(19.9)) == at(20)
    assert rate_limits.take("e", rate, using="default", now=at(20)) is None
    assert rate_limits.take("e", rate, using="default", now=at(25)) == at(40)
    # Idle for an hour: no credit saved up, one run and the next one 20 s later.
    assert [rate_limits.take("e", rate, using="default", now=at(3600)) for _ in range(2)] == [None, at(3620)]


def test_exactly_the_allowed_count_in_every_window_of_a_steady_stream():
    rate = Rate(10, timedelta(seconds=1))
    tries = range(0, 5000, 10)  # a try every 10 ms for 5 s, at 10 times the rate
    allowed = [t for t in tries if rate_limits.take("s", rate, using="default", now=at(t / 1000)) is None]
    assert len(allowed) == 50
    for start in range(0, 4001, 10):
        assert len([t for t in allowed if start <= t < start + 1000]) == 10  # in every one-second window


def test_buckets_are_per_side_effect_and_per_database():
    rate = Rate(1, timedelta(hours=1))
    assert rate_limits.take("a", rate, using="default", now=T0) is None
    assert rate_limits.take("b", rate, using="default", now=T0) is None
    assert rate_limits.take("a", rate, using="other", now=T0) is None
    assert rate_limits.take("a", rate, using="default", now=T0) == at(3600)
    assert RateLimit.objects.count() == 2


@pytest.mark.parametrize(
    ("rate", "waited", "window"),
    [
        ("600/m", 0, 0.1),  # just over the limit: back within one interval
        ("600/m", 0.3, 0.6),  # postponed before: twice what it has waited
        ("600/m", 3600, 60),  # waited long: spread over one period at most
        ("2/m", 30, 60),
        ("1000/h", 1, 3.6),
    ],
)
def test_a_job_over_the_limit_comes_back_within_twice_what_it_has_waited(rate, waited, window):
    next_token = at(100)
    since = next_token - timedelta(seconds=waited)
    assert rate_limits.comeback(next_token, since, Rate.parse(rate), 0.0) == next_token
    assert rate_limits.comeback(next_token, since, Rate.parse(rate), 1.0) == next_token + timedelta(seconds=window)


def emit(text):
    with transaction.atomic():
        return throttled.after_commit(text)


def test_deliver_postpones_a_job_over_the_limit_without_burning_an_attempt():
    jobs = [emit(f"run {n}") for n in range(3)]
    outcomes = [delivery.deliver(job.pk, "default") for job in jobs]
    assert outcomes == [Outcome.SUCCEEDED, Outcome.RATE_LIMITED, Outcome.RATE_LIMITED]
    postponed = Job.objects.get(pk=jobs[2].pk)
    assert (postponed.status, postponed.attempts, postponed.started_at, postponed.lease_expires_at) == (
        "pending",
        0,
        None,
        None,
    )
    # The next run may start 30 s after the first; the job, waiting 30 s by then, comes back within 60 s after that.
    wait = (postponed.available_at - timezone.now()).total_seconds()
    assert 25 < wait < 95, wait
    assert delivery.deliver(postponed.pk, "default") == Outcome.SKIPPED  # not due: a duplicate message is dropped
    assert list(Ledger.objects.values_list("value", flat=True)) == ["run 0"]


def test_a_postponed_retry_stays_failed_with_its_attempts():
    job = emit("retry")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED, attempts=1)
    RateLimit.objects.create(effect=throttled.path, full_at=timezone.now() + timedelta(hours=1))
    assert delivery.deliver(job.pk, "default") == Outcome.RATE_LIMITED
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("failed", 1)


def test_the_relay_publishes_a_postponed_job_once_due():
    from critical_path.relay import passes as relay

    job = emit("later")
    # The dispatcher's hand-off is over before the clock is moved below, so it cannot mark the job enqueued.
    assert dispatch.shutdown(timeout=10)
    RateLimit.objects.create(effect=throttled.path, full_at=timezone.now() + timedelta(hours=1))
    assert delivery.deliver(job.pk, "default") == Outcome.RATE_LIMITED
    # A dispatcher's UPDATE, late (its message consumed by the delivery above), leaves it pending for the relay.
    assert Job.objects.filter(pk=job.pk).hand_off() == 0
    assert job.pk not in relay.due_jobs("default").values_list("pk", flat=True)
    # Time passes: emitted 10 s ago (within the relay's grace for fresh jobs), due since 1 s.
    Job.objects.filter(pk=job.pk).update(
        created_at=now_plus(-timedelta(seconds=10)), available_at=now_plus(-timedelta(seconds=1))
    )
    assert job.pk in relay.due_jobs("default").values_list("pk", flat=True)
