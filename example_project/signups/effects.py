"""The signup's three side effects, and the sales team's note of an upgrade.

A Celery worker runs them after the transaction commits (or the view runs the signup's three inline).
"""

import datetime

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Count, Q
from django.db.models.functions import TruncDate

from critical_path import NoCurrentJob, current_job, side_effect
from example_project.signups import crm
from example_project.signups.models import Account, DailyStats


def idempotency_key(inline: str) -> str:
    """The job's key, stable across its retries; ``inline`` when the view runs the function itself."""
    try:
        return current_job().idempotency_key
    except NoCurrentJob:
        return inline


@side_effect(max_attempts=5, time_limit=30)
def send_welcome_email(account_id: int) -> None:
    """Send the welcome email. Its Message-ID is made of the job's key, so a mail system can drop a retried copy."""
    account = Account.objects.get(pk=account_id)
    key = idempotency_key(f"welcome-{account_id}").replace(":", ".")
    EmailMessage(
        subject="Welcome aboard",
        body=f"Hello {account.email}, your {account.get_plan_display()} account is ready.",
        to=[account.email],
        headers={"Message-ID": f"<{key}@signups.example>"},
    ).send()


@side_effect(max_attempts=3, time_limit=30, rate="600/m")
def sync_to_crm(account_id: int) -> None:
    """Create the account's contact in the CRM, which creates one contact per idempotency key.

    The CRM accepts 600 calls a minute from us, whatever the number of workers; the view orders the calls of
    one account (``ordering_key``), so an update never overtakes the creation.
    """
    account = Account.objects.get(pk=account_id)
    contact = {"email": account.email, "plan": account.plan, "signed_up": account.created_at.isoformat()}
    crm.upsert_contact(contact, key=idempotency_key(f"crm-{account_id}"))


@side_effect(max_attempts=5, time_limit=60, coalesce=True)
def recompute_stats(day: str) -> None:
    """Recount one day's signups and paid ones from the accounts: safe to run any number of times.

    Coalesced: after a burst of signups on one day it runs a few times, not once per signup.
    """
    date = datetime.date.fromisoformat(day)
    counts = (
        Account.objects.annotate(day=TruncDate("created_at"))
        .filter(day=date)
        .aggregate(signups=Count("pk"), paid=Count("pk", filter=Q(plan=Account.Plan.PRO)))
    )
    DailyStats.objects.update_or_create(day=date, defaults=counts)


@side_effect(max_attempts=5, time_limit=30)
def notify_sales_of_upgrade(account_id: int) -> None:
    """Tell sales an account moved to the paid plan. Emitted by a signal bridge (see apps.py), not by a view."""
    account = Account.objects.get(pk=account_id)
    key = idempotency_key(f"upgrade-{account_id}").replace(":", ".")
    EmailMessage(
        subject=f"Upgrade: {account.email}",
        body=f"{account.email} moved to the {account.get_plan_display()} plan.",
        to=[settings.SALES_EMAIL],
        headers={"Message-ID": f"<{key}@signups.example>"},
    ).send()
