"""The example's signup page and JSON endpoint, in both modes, against a real (in-thread) CRM server."""

import json

import pytest
from django.db import transaction

from critical_path import guard
from critical_path.models import Job
from critical_path.worker import delivery
from example_project.signups import crm as crm_client
from example_project.signups.effects import recompute_stats, send_welcome_email, sync_to_crm
from example_project.signups.models import Account, DailyStats

pytestmark = [pytest.mark.urls("example_project.urls"), pytest.mark.django_db(transaction=True)]

EFFECTS = {
    "example_project.signups.effects.send_welcome_email",
    "example_project.signups.effects.sync_to_crm",
    "example_project.signups.effects.recompute_stats",
}


def post(client, body, mode=""):
    return client.post(f"/api/signups/{mode}", json.dumps(body), content_type="application/json")


def test_inline_runs_the_three_side_effects_before_answering(client, crm, mailoutbox):
    response = post(client, {"email": "ada@example.com", "plan": "pro"}, "?mode=inline")

    assert response.status_code == 201
    assert response.json() == {"id": Account.objects.get().pk, "mode": "inline", "lost": []}
    assert [message.to for message in mailoutbox] == [["ada@example.com"]]
    assert [contact["email"] for contact in crm.contacts.values()] == ["ada@example.com"]
    assert DailyStats.objects.values_list("signups", "paid").get() == (1, 1)
    assert not Job.objects.exists()


def test_inline_loses_the_side_effect_that_fails(client, crm, mailoutbox):
    crm.failure_rate = 1

    response = post(client, {"email": "ada@example.com"}, "?mode=inline")

    assert response.status_code == 201
    assert response.json()["lost"] == ["sync_to_crm"]
    assert not crm.contacts
    assert len(mailoutbox) == 1


def test_critical_path_answers_with_the_jobs_written_and_nothing_run(client, crm, mailoutbox, emitted_side_effects):
    response = post(client, {"email": "ada@example.com"})

    assert response.status_code == 201
    assert response.json()["mode"] == "critical-path"
    account = Account.objects.get()
    emitted_side_effects.assert_emitted_once(send_welcome_email, account.pk)
    emitted_side_effects.assert_emitted_once(sync_to_crm, account_id=account.pk)
    emitted_side_effects.assert_emitted_once(recompute_stats, account.created_at.date().isoformat())
    assert (mailoutbox, crm.contacts, DailyStats.objects.count()) == ([], {}, 0)


def test_critical_path_jobs_send_their_idempotency_key_out(client, crm, mailoutbox, run_pending_jobs):
    post(client, {"email": "ada@example.com", "plan": "free"})

    run_pending_jobs().assert_succeeded()

    email_job, crm_job = (Job.objects.get(effect__endswith=name) for name in ("send_welcome_email", "sync_to_crm"))
    assert mailoutbox[0].extra_headers["Message-ID"] == f"<{email_job.uuid}@signups.example>"
    assert list(crm.contacts) == [str(crm_job.uuid)]
    assert DailyStats.objects.values_list("signups", "paid").get() == (1, 0)


def test_the_side_effects_run_right_after_the_commit_when_eager(client, crm, mailoutbox, eager_side_effects):
    response = post(client, {"email": "ada@example.com", "plan": "pro"})

    assert response.status_code == 201
    assert [message.to for message in mailoutbox] == [["ada@example.com"]]
    assert [contact["email"] for contact in crm.contacts.values()] == ["ada@example.com"]
    assert DailyStats.objects.values_list("signups", "paid").get() == (1, 1)


def test_a_crm_that_keeps_failing_dead_letters_the_sync(client, crm, mailoutbox, run_pending_jobs):
    crm.failure_rate = 1
    post(client, {"email": "ada@example.com"})

    runs = run_pending_jobs(retries=True)  # each retry at once, not after its backoff

    [dead] = runs.dead
    assert (dead.effect, dead.attempts) == (sync_to_crm.path, 3)
    assert "503" in dead.last_error
    assert len(runs.succeeded) == 2 and len(mailoutbox) == 1


def test_a_failing_crm_call_is_retried_later(client, crm):
    crm.failure_rate = 1
    post(client, {"email": "ada@example.com"})
    job = Job.objects.get(effect__endswith="sync_to_crm")

    assert delivery.deliver(job.pk, "default") == "failed"

    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert "503" in job.last_error


def test_the_crm_honours_the_idempotency_key(crm):
    first = crm_client.upsert_contact({"email": "ada@example.com"}, key="k-1")
    again = crm_client.upsert_contact({"email": "ada@example.com"}, key="k-1")

    assert first == again
    assert (len(crm.contacts), crm.counts["created"], crm.counts["repeated"]) == (1, 1, 1)


def test_invalid_signups_are_refused_with_the_form_errors(client, crm):
    Account.objects.create(email="ada@example.com")

    taken = post(client, {"email": "ada@example.com"})
    not_json = client.post("/api/signups/", "{", content_type="application/json")

    assert taken.status_code == not_json.status_code == 400
    assert "email" in taken.json()["errors"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(("query", "effects"), [("", EFFECTS), ("?mode=inline", set())])
def test_the_page_signs_up_in_either_mode(client, crm, mailoutbox, query, effects):
    page = client.get(f"/{query}")
    response = client.post(f"/{query}", {"email": "ada@example.com", "plan": "free"})

    assert page.status_code == 200
    assert b"Sign up" in page.content
    assert response.status_code == 302
    assert response["Location"] == f"/{query}"
    assert set(Job.objects.values_list("effect", flat=True)) == effects
    assert len(mailoutbox) == (0 if effects else 1)
    with transaction.atomic():
        assert Account.objects.get().plan == "free"


def test_the_guard_reports_what_inline_mode_does_in_the_request(client, crm, mailoutbox, settings):
    settings.CRITICAL_PATH_GUARD = "raise"
    with pytest.raises(guard.InlineSideEffect) as failure:
        post(client, {"email": "ada@example.com"}, "?mode=inline")

    assert [(finding.kind, finding.where, finding.function) for finding in failure.value.findings] == [
        ("email", "example_project/signups/effects.py:36", "send_welcome_email"),
        ("http", "example_project/signups/crm.py:23", "upsert_contact"),
    ]
    assert failure.value.findings[1].detail == f"HTTP POST {settings.CRM_URL}/contacts"
    assert Account.objects.count() == 1


def test_the_critical_path_does_nothing_inline(client, crm, mailoutbox, settings, assert_no_inline_side_effects):
    settings.CRITICAL_PATH_GUARD = "raise"
    response = post(client, {"email": "ada@example.com"})

    assert response.status_code == 201
    assert Job.objects.count() == 3
    assert assert_no_inline_side_effects == []


def test_the_guard_reports_each_crm_request_on_the_kept_alive_connection(crm, settings):
    with guard.watch() as findings:
        crm_client.upsert_contact({"email": "a@example.com"}, key="1")
        crm_client.upsert_contact({"email": "b@example.com"}, key="2")

    assert [finding.detail for finding in findings] == [f"HTTP POST {settings.CRM_URL}/contacts"] * 2
