from typing import Any

from django.apps import AppConfig


class SignupsConfig(AppConfig):
    name = "example_project.signups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from critical_path.bridge import bridge
        from example_project.signups.effects import notify_sales_of_upgrade

        # An upgrade saved anywhere (the admin's action, a shell, a future billing view) tells sales,
        # in the transaction of the save.
        bridge(
            post_save,
            sender="signups.Account",
            effect=notify_sales_of_upgrade,
            when=upgraded,
            kwargs={"account_id": "pk"},
        )


def upgraded(instance: Any, created: bool, update_fields: frozenset[str] | None, **kwargs: Any) -> bool:
    """A save of an existing account's plan that makes it paid (``Account.upgrade()``)."""
    return not created and update_fields is not None and "plan" in update_fields and instance.plan == instance.Plan.PRO
