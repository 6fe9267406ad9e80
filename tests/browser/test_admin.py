"""The on-call path in a real browser: log in, find the dead letters, replay them, watch them run."""

import os
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models.functions import Now
from django.utils import timezone

from critical_path.models import Job, RelayHeartbeat
from tests.browser.conftest import log_in
from tests.factories import make_job
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, databases="__all__")]

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "shop/effects.py", line 42, in sync_crm\n'
    "    response.raise_for_status()\n"
    "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: https://crm.example.com/api"
)


def on_call(username="oncall"):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    codenames = ["view_job", "view_failedjob", "view_deadletter", "view_dashboard", "replay_job", "discard_job"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="critical_path", codename__in=codenames)
    )
    return user


def dead(effect="tests.effects.note", **fields):
    history = [
        {"attempt": attempt, "started_at": None, "error": TRACEBACK.splitlines()[-1], "traceback": TRACEBACK}
        for attempt in (3, 2, 1)
    ]
    values = {"attempts": 3, "last_error": TRACEBACK, "error_history": history, "finished_at": Now()}
    return make_job(Job.Status.DEAD, effect=effect, **{**values, **fields})


def test_replay_dead_letters_from_the_browser(page, live_server, worker_queue, screenshots):
    on_call()
    jobs = [dead(queue=worker_queue, args=[f"replayed {n}"]) for n in range(2)]
    other = dead(effect="tests.effects.flaky", args=[0], queue=worker_queue)
    log_in(page, live_server, "oncall")
    page.click("text=Dead letters")
    page.wait_for_selector("#result_list")
    page.click("#changelist-filter >> text=tests.effects.note")
    page.wait_for_url("**effect=tests.effects.note**")
    assert page.locator("#result_list tbody tr").count() == 2
    page.check("#action-toggle")
    page.select_option("select[name=action]", "replay")
    page.screenshot(path=os.path.join(screenshots, "dead-letters-selected.png"))
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist")
    assert "2 jobs replayed." in page.inner_text("ul.messagelist")
    page.screenshot(path=os.path.join(screenshots, "dead-letters-replayed.png"))
    statuses = set(Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("status", flat=True))
    assert statuses <= {"pending", "enqueued", "running", "succeeded"}
    wait_for(
        lambda: Job.objects.filter(pk__in=[job.pk for job in jobs], status=Job.Status.SUCCEEDED).count() == 2,
        timeout=90,
        message="replayed jobs succeed",
    )
    other.refresh_from_db()
    assert other.status == Job.Status.DEAD


def test_staff_without_replay_permission_see_no_actions(page, live_server):
    User.objects.create_user("viewer", password="pw", is_staff=True).user_permissions.set(
        Permission.objects.filter(codename__in=["view_deadletter"])
    )
    dead()
    log_in(page, live_server, "viewer")
    page.goto(live_server.url + "/admin/critical_path/deadletter/")
    page.wait_for_selector("#result_list")
    assert page.locator("select[name=action]").count() == 0


def seed_for_screenshots():
    now = timezone.now()
    effects = ["shop.effects.send_receipt", "shop.effects.sync_crm", "shop.effects.recompute_stats"]
    for minute in range(60):
        for n in range(3 + (minute * 7) % 5):
            effect = effects[n % 3]
            finished = now - timedelta(minutes=minute, seconds=n)
            started = finished - timedelta(milliseconds=80 + 40 * n)
            make_job(
                Job.Status.SUCCEEDED, effect=effect, attempts=1, kwargs={"order_id": 1000 + minute * 10 + n},
                available_at=started - timedelta(milliseconds=30 + 15 * n),
                enqueued_at=started - timedelta(milliseconds=20), started_at=started,
                finished_at=finished, queue="default",
            )  # fmt: skip
        if 20 <= minute < 26:
            dead(effect="shop.effects.sync_crm", kwargs={"customer_id": minute, "api_token": "tok_live_1234"},
                 finished_at=now - timedelta(minutes=minute), started_at=now - timedelta(minutes=minute))  # fmt: skip
    for n in range(3):
        make_job(Job.Status.FAILED, effect="shop.effects.sync_crm", attempts=2, last_error=TRACEBACK,
                 started_at=now - timedelta(minutes=n), available_at=now + timedelta(minutes=5),
                 queue="crm")  # fmt: skip
    for _n in range(4):
        make_job(effect="shop.effects.send_receipt", queue="default", available_at=now - timedelta(seconds=12))
    RelayHeartbeat.objects.create(
        name="web-1:4127", started_at=now - timedelta(hours=3), last_run_at=Now(), passes=2160, published=42
    )


def test_screenshots_of_the_admin(page, live_server, screenshots):
    """The pictures of the admin docs; ``python -m tests.browser.screenshots`` writes them into docs/_static."""
    on_call()
    seed_for_screenshots()
    log_in(page, live_server, "oncall")
    page.goto(live_server.url + "/admin/critical_path/job/")
    page.wait_for_selector("#result_list")
    page.screenshot(path=os.path.join(screenshots, "admin-jobs.png"))
    letter = Job.objects.filter(status=Job.Status.DEAD).order_by("-pk").first()
    page.goto(live_server.url + f"/admin/critical_path/deadletter/{letter.pk}/change/")
    page.click("#cp-errors details summary")
    page.screenshot(path=os.path.join(screenshots, "admin-dead-letter.png"), full_page=True)
    assert "tok_live_1234" not in page.content()
    page.goto(live_server.url + "/admin/critical_path/dashboard/")
    page.wait_for_selector("svg.cp-chart")
    page.screenshot(path=os.path.join(screenshots, "admin-dashboard.png"), full_page=True)
    for name in ("admin-jobs.png", "admin-dead-letter.png", "admin-dashboard.png"):
        assert os.path.getsize(os.path.join(screenshots, name)) > 10_000
