"""The example's side effects: run by a Celery worker after the signup commits."""

from critical_path import current_job, side_effect
from example_project.signups.models import Account, WelcomeEmail


@side_effect(max_attempts=8, time_limit=60)
def send_welcome_email(account_id: int) -> None:
    """Record the welcome email once per account, whichever attempt gets there."""
    account = Account.objects.get(pk=account_id)
    WelcomeEmail.objects.get_or_create(account=account)
    print(f"welcome email for {account.email} (job key {current_job().idempotency_key})")
