"""The example's signal bridge: an account's upgrade tells sales, in the transaction of the save."""

import pytest
from django.db import transaction

from critical_path.models import Job
from example_project.signups.effects import notify_sales_of_upgrade
from example_project.signups.models import Account

pytestmark = [pytest.mark.urls("example_project.urls"), pytest.mark.django_db(transaction=True)]


class Rollback(Exception):
    pass


def test_an_upgrade_emits_the_sales_notice(emitted_side_effects):
    account = Account.objects.create(email="ada@example.com")
    emitted_side_effects.assert_not_emitted(notify_sales_of_upgrade)  # a signup is not an upgrade

    with transaction.atomic():
        account.upgrade()

    emitted_side_effects.assert_emitted_once(notify_sales_of_upgrade, account_id=account.pk)


def test_an_upgrade_rolled_back_tells_nobody():
    account = Account.objects.create(email="ada@example.com")

    with pytest.raises(Rollback), transaction.atomic():
        account.upgrade()
        raise Rollback

    assert not Job.objects.exists()


def test_the_sales_notice_is_an_email(mailoutbox, run_pending_jobs):
    account = Account.objects.create(email="ada@example.com")
    with transaction.atomic():
        account.upgrade()

    run_pending_jobs().assert_succeeded()

    [notice] = mailoutbox
    assert (notice.to, notice.subject) == (["sales@signups.example"], "Upgrade: ada@example.com")


def test_the_admins_upgrade_action(admin_client, emitted_side_effects):
    free, pro = Account.objects.create(email="free@example.com"), Account.objects.create(email="pro@example.com")
    pro.plan = Account.Plan.PRO
    pro.save()  # not an upgrade: update_fields is not given

    response = admin_client.post(
        "/admin/signups/account/", {"action": "upgrade", "_selected_action": [free.pk, pro.pk]}, follow=True
    )

    assert response.status_code == 200
    assert "1 accounts upgraded" in response.content.decode()
    assert [entry.kwargs for entry in emitted_side_effects] == [{"account_id": free.pk}]
