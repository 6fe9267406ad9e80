from django.contrib import admin

from example_project.signups.models import Account, DailyStats


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["email", "plan", "created_at"]
    list_filter = ["plan"]


@admin.register(DailyStats)
class DailyStatsAdmin(admin.ModelAdmin):
    list_display = ["day", "signups", "paid", "conversion", "computed_at"]
