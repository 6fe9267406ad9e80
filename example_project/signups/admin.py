from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from example_project.signups.models import Account, DailyStats


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["email", "plan", "created_at"]
    list_filter = ["plan"]
    actions = ["upgrade"]

    @admin.action(description="Upgrade to Pro")
    def upgrade(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        with transaction.atomic():
            accounts = list(queryset.select_for_update().filter(plan=Account.Plan.FREE))
            for account in accounts:
                account.upgrade()
        self.message_user(request, f"{len(accounts)} accounts upgraded; sales will hear of each.", messages.SUCCESS)


@admin.register(DailyStats)
class DailyStatsAdmin(admin.ModelAdmin):
    list_display = ["day", "signups", "paid", "conversion", "computed_at"]
