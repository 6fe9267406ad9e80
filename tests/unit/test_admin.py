"""The admin: read-only jobs, failed jobs and dead letters, replay and discard behind their permissions."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.urls import reverse

from critical_path.models import Job
from tests.factories import make_job
from tests.helpers import at_once

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

TRACEBACK = 'Traceback (most recent call last):\n  File "crm.py", line 1, in sync\nConnectionError: CRM is down'


def staff(username, *codenames):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="critical_path", codename__in=codenames)
    )
    return user


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


ON_CALL = ["view_job", "view_failedjob", "view_deadletter", "view_dashboard", "replay_job", "discard_job"]


@pytest.fixture
def operator():
    return client_for(staff("operator", *ON_CALL))


@pytest.fixture
def viewer():
    return client_for(staff("viewer", "view_job", "view_failedjob", "view_deadletter", "view_dashboard"))


def dead(**fields):
    history = [{"attempt": 3, "started_at": None, "error": "ConnectionError: CRM is down", "traceback": TRACEBACK}]
    values = {"attempts": 3, "last_error": TRACEBACK, "error_history": history, "finished_at": "2026-01-01T00:00Z"}
    return make_job(Job.Status.DEAD, **{**values, **fields})


def act(client, url, action, jobs, follow=False, **extra):
    data = {"action": action, "index": 0, "_selected_action": [job.pk for job in jobs], **extra}
    return client.post(url, data, follow=follow)


URLS = {
    "jobs": reverse("admin:critical_path_job_changelist"),
    "failed": reverse("admin:critical_path_failedjob_changelist"),
    "dead": reverse("admin:critical_path_deadletter_changelist"),
    "dashboard": reverse("admin:critical_path_dashboard_changelist"),
}


@pytest.mark.parametrize("name", list(URLS))
def test_non_staff_are_sent_to_the_login_page(name):
    user = User.objects.create_user("visitor", password="pw")
    response = client_for(user).get(URLS[name])
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("name", list(URLS))
def test_staff_without_view_permission_are_refused(name):
    assert client_for(staff("nobody")).get(URLS[name]).status_code == 403


def test_index_lists_failed_jobs_dead_letters_and_the_dashboard(operator):
    page = operator.get(reverse("admin:index")).content.decode()
    for url in URLS.values():
        assert url in page


def test_jobs_are_read_only(operator):
    job = dead()
    assert operator.get(reverse("admin:critical_path_job_add")).status_code == 403
    page = operator.get(reverse("admin:critical_path_job_change", args=[job.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert operator.post(reverse("admin:critical_path_job_change", args=[job.pk]), {"effect": "x"}).status_code == 403
    assert operator.post(reverse("admin:critical_path_job_delete", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.effect == "tests.effects.note"


def test_status_lists_show_only_their_status_newest_first(operator):
    old, new = dead(finished_at="2026-01-01T00:00Z"), dead(finished_at="2026-02-01T00:00Z")
    failed = make_job(Job.Status.FAILED, last_error=TRACEBACK, started_at="2026-01-01T00:00Z")
    make_job(Job.Status.SUCCEEDED)
    page = operator.get(URLS["dead"])
    assert [job.pk for job in page.context["cl"].result_list] == [new.pk, old.pk]
    assert "ConnectionError: CRM is down" in page.content.decode()
    page = operator.get(URLS["failed"])
    assert [job.pk for job in page.context["cl"].result_list] == [failed.pk]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "dead"}, {"dead"}),
        ({"effect": "tests.effects.flaky"}, {"flaky"}),
        ({"queue": "crm"}, {"crm"}),
        ({"q": "CRM is down"}, {"dead"}),
        ({"q": "key-42"}, {"keyed"}),
        ({"q": "corr-7"}, {"correlated"}),
        ({"q": "tests.effects.flaky"}, {"flaky"}),
        ({"finished_at__gte": "2026-01-01 00:00:00+00:00", "finished_at__lt": "2026-01-02 00:00:00+00:00"}, {"dead"}),
    ],
)
def test_jobs_list_filters_and_search(operator, query, expected):
    jobs = {
        "dead": dead(),
        "flaky": make_job(effect="tests.effects.flaky"),
        "crm": make_job(queue="crm"),
        "keyed": make_job(idempotency_key="key-42"),
        "correlated": make_job(correlation_id="corr-7"),
    }
    names = {job.pk: name for name, job in jobs.items()}
    response = operator.get(URLS["jobs"], query)
    assert response.status_code == 200
    assert {names[job.pk] for job in response.context["cl"].result_list} == expected


def test_search_by_id(operator):
    job, _other = make_job(), make_job()
    response = operator.get(URLS["jobs"], {"q": f"#{job.pk}"})
    assert [row.pk for row in response.context["cl"].result_list] == [job.pk]


def test_search_by_uuid_finds_the_job_whose_key_it_is(operator):
    job, _other = make_job(), make_job()
    response = operator.get(URLS["jobs"], {"q": str(job.uuid)})
    assert [row.pk for row in response.context["cl"].result_list] == [job.pk]
    response = operator.get(URLS["jobs"], {"q": job.uuid.hex})
    assert [row.pk for row in response.context["cl"].result_list] == [job.pk]


def test_a_plain_jobs_page_shows_its_key_and_times_to_the_second_and_no_sections_that_do_not_apply(operator):
    job = make_job(Job.Status.SUCCEEDED, created_at="2026-01-01T21:23:07Z", finished_at="2026-01-01T21:23:09Z")
    page = operator.get(reverse("admin:critical_path_job_change", args=[job.pk])).content.decode()
    assert f"{job.uuid} (the UUID: emitted without a key)" in page
    assert "2026-01-01 21:23:07" in page and "2026-01-01 21:23:09" in page
    for section in ("Django task", "Return value", "Task result", "Ordering"):
        assert section not in page, section
    keyed = make_job(idempotency_key="welcome:1", ordering_key="account-1")
    page = operator.get(reverse("admin:critical_path_job_change", args=[keyed.pk])).content.decode()
    assert "welcome:1" in page and "the UUID" not in page and "Ordering" in page


def test_lists_show_times_to_the_second(operator):
    make_job(Job.Status.DEAD, created_at="2026-01-01T21:23:07Z", finished_at="2026-01-01T21:23:41Z")
    assert "2026-01-01 21:23:07" in operator.get(URLS["jobs"]).content.decode()
    assert "2026-01-01 21:23:41" in operator.get(URLS["dead"]).content.decode()


def test_detail_shows_masked_payload_and_error_history_last_first(operator):
    job = dead(
        kwargs={"email": "ada@example.com", "api_token": "s3cr3t", "nested": {"Password": "hunter2"}},
        error_history=[
            {"attempt": 2, "started_at": None, "error": "second failure", "traceback": TRACEBACK},
            {"attempt": 1, "started_at": None, "error": "first failure", "traceback": TRACEBACK},
        ],
    )
    page = operator.get(reverse("admin:critical_path_deadletter_change", args=[job.pk])).content.decode()
    assert "ada@example.com" in page
    assert "s3cr3t" not in page and "hunter2" not in page
    assert '"api_token": "********"' in page.replace("&quot;", '"')
    assert page.index("second failure") < page.index("first failure")
    assert "<details><summary>Traceback</summary>" in page


def test_raw_payload_needs_its_own_permission(operator):
    job = dead(kwargs={"api_token": "s3cr3t"})
    raw = client_for(staff("auditor", "view_job", "view_job_payload"))
    assert "s3cr3t" in raw.get(reverse("admin:critical_path_job_change", args=[job.pk])).content.decode()


def test_replay_action(operator):
    jobs = [dead(), dead()]
    done = make_job(Job.Status.SUCCEEDED)
    response = act(operator, URLS["dead"], "replay", jobs)
    assert response.status_code == 302
    for job in jobs:
        job.refresh_from_db()
        # pending, or enqueued once this process's dispatcher has published it after the action's commit
        assert job.status in {Job.Status.PENDING, Job.Status.ENQUEUED}
        assert (job.attempts, job.error_history[0]["attempt"]) == (0, 3)
    messages = [str(m) for m in operator.get(URLS["dead"]).context["messages"]]
    assert "2 jobs replayed." in messages
    done.refresh_from_db()
    assert done.status == Job.Status.SUCCEEDED


def test_replay_skips_jobs_whose_status_does_not_allow_it(operator):
    job, done = dead(), make_job(Job.Status.SUCCEEDED)
    response = act(operator, URLS["jobs"], "replay", [job, done], follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert "1 job replayed." in texts
    assert any("1 selected job was skipped" in text for text in texts)


def test_discard_action(operator):
    job, failed = dead(), make_job(Job.Status.FAILED)
    response = act(operator, URLS["jobs"], "discard", [job, failed], follow=True)
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.DISCARDED}
    assert [str(m) for m in response.context["messages"]] == ["2 jobs discarded."]
    assert {entry.get_change_message() for entry in LogEntry.objects.all()} == {"Discarded."}


def test_each_action_leaves_one_log_entry_per_job(operator):
    jobs = [dead(), dead()]
    act(operator, URLS["dead"], "replay", jobs)
    entries = LogEntry.objects.order_by("object_id")
    assert [(entry.object_id, entry.user.username) for entry in entries] == [(str(job.pk), "operator") for job in jobs]
    assert "Replayed" in entries[0].get_change_message()


def test_audit_is_written_per_batch_not_per_job(operator, django_assert_max_num_queries):
    jobs = [dead() for _ in range(30)]
    with django_assert_max_num_queries(40):
        act(operator, URLS["dead"], "replay", jobs)
    assert LogEntry.objects.count() == 30


@pytest.mark.parametrize("action", ["replay", "discard"])
def test_staff_without_the_permission_do_not_see_the_action_and_a_crafted_post_changes_nothing(viewer, action):
    job = dead()
    page = viewer.get(URLS["dead"]).content.decode()
    assert f'value="{action}"' not in page
    response = act(viewer, URLS["dead"], action, [job], follow=True)
    assert response.status_code == 200  # no action at all: the POST is ignored and the list shown again
    assert not list(response.context["messages"])
    job.refresh_from_db()
    assert job.status == Job.Status.DEAD
    assert not LogEntry.objects.exists()


def test_a_crafted_post_for_an_action_held_by_other_permissions_is_refused():
    client = client_for(staff("janitor", "view_job", "view_deadletter", "discard_job"))
    job = dead()
    assert 'value="discard"' in client.get(URLS["dead"]).content.decode()
    response = act(client, URLS["dead"], "replay", [job], follow=True)
    assert "No action selected." in [str(m) for m in response.context["messages"]]
    job.refresh_from_db()
    assert job.status == Job.Status.DEAD


def test_actions_need_a_csrf_token():
    user = staff("operator", *ON_CALL)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    job = dead()
    assert act(client, URLS["dead"], "replay", [job]).status_code == 403
    job.refresh_from_db()
    assert job.status == Job.Status.DEAD


def test_a_double_submit_replays_once(operator):
    job = dead()
    act(operator, URLS["jobs"], "replay", [job])
    response = act(operator, URLS["jobs"], "replay", [job], follow=True)
    assert "1 selected job was skipped" in " ".join(str(m) for m in response.context["messages"])
    assert LogEntry.objects.count() == 1


@pytest.mark.parametrize("status", ["dead", "failed"])
def test_a_double_submit_on_a_status_list_says_the_second_was_skipped(operator, status):
    job = dead() if status == "dead" else make_job(Job.Status.FAILED, attempts=1)
    act(operator, URLS[status], "replay", [job])
    response = act(operator, URLS[status], "replay", [job], follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert "0 jobs replayed." in texts
    assert "1 selected job was skipped: its status does not allow it, or someone changed it first." in texts
    assert LogEntry.objects.count() == 1


def test_two_operators_replaying_at_once_replay_each_job_once():
    if connections["default"].vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL's row locks")
    jobs = [dead() for _ in range(200)]
    clients = [client_for(staff(f"operator{n}", *ON_CALL)) for n in range(2)]
    responses = at_once(*[lambda client=client: act(client, URLS["dead"], "replay", jobs) for client in clients])
    assert [response.status_code for response in responses] == [302, 302]
    assert Job.objects.filter(status=Job.Status.PENDING).count() == 200
    assert LogEntry.objects.count() == 200
    assert sorted(LogEntry.objects.values_list("object_id", flat=True)) == sorted(str(job.pk) for job in jobs)


def test_replay_all_matching_the_filter_past_the_cap_asks_first(operator, settings):
    settings.CRITICAL_PATH_ADMIN_ACTION_LIMIT = 3
    flaky = [dead(effect="tests.effects.flaky") for _ in range(5)]
    other = dead()
    url = URLS["dead"] + "?effect=tests.effects.flaky"
    response = act(operator, url, "replay", flaky[:1], select_across=1)
    assert response.status_code == 200
    assert "Replay all 5 jobs matching the current selection?" in response.content.decode()
    assert Job.objects.filter(status=Job.Status.PENDING).count() == 0
    response = act(operator, url, "replay", flaky[:1], select_across=1, confirm=5)
    assert response.status_code == 302
    replayed = set(Job.objects.filter(effect="tests.effects.flaky").values_list("status", flat=True))
    assert replayed <= {Job.Status.PENDING, Job.Status.ENQUEUED}, replayed  # enqueued once its dispatcher published
    other.refresh_from_db()
    assert other.status == Job.Status.DEAD


def test_jobs_list_links_the_dashboard(operator, viewer):
    assert URLS["dashboard"] in operator.get(URLS["jobs"]).content.decode()
    no_dashboard = client_for(staff("listonly", "view_job"))
    assert URLS["dashboard"] not in no_dashboard.get(URLS["jobs"]).content.decode()


def test_side_effect_filter_offers_declared_effects_and_those_of_live_and_dead_jobs(operator):
    make_job(Job.Status.DEAD, effect="shop.effects.renamed_since")
    make_job(Job.Status.SUCCEEDED, effect="shop.effects.long_gone")
    jobs = operator.get(reverse("admin:critical_path_job_changelist")).content.decode()
    assert "effect=shop.effects.renamed_since" in jobs and "effect=tests.effects.note" in jobs
    assert "effect=shop.effects.long_gone" not in jobs
    failed = operator.get(reverse("admin:critical_path_failedjob_changelist")).content.decode()
    assert "effect=shop.effects.renamed_since" not in failed


def test_the_dashboard_permission_opens_the_dashboard_and_no_job(settings):
    """``view_dashboard`` alone: the dashboard, not a job's record through the dashboard's proxy model."""
    job = make_job(Job.Status.DEAD, kwargs={"password": "hunter2"})
    client = client_for(staff("watcher", "view_dashboard"))
    assert client.get(reverse("admin:critical_path_dashboard_changelist")).status_code == 200
    for page in ("change", "history", "delete"):
        response = client.get(f"/admin/critical_path/dashboard/{job.pk}/{page}/")
        assert response.status_code == 404, page
        assert b"hunter2" not in response.content


@pytest.mark.parametrize("term", ["²", "9" * 5000, "9" * 30])
def test_search_terms_that_look_like_numbers_but_are_no_id_are_searched_as_text(operator, term):
    make_job()
    response = operator.get(reverse("admin:critical_path_job_changelist"), {"q": term})
    assert response.status_code == 200
