from django.db import models


class Account(models.Model):
    class Plan(models.TextChoices):
        FREE = "free", "Free"
        PRO = "pro", "Pro"

    email = models.EmailField(unique=True)
    plan = models.CharField(max_length=8, choices=Plan.choices, default=Plan.FREE)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email

    def upgrade(self) -> None:
        """Move the account to the paid plan (the signal bridge in apps.py tells sales)."""
        self.plan = self.Plan.PRO
        self.save(update_fields=["plan"])


class DailyStats(models.Model):
    """Signups per day and their conversion to the paid plan, recomputed by a side effect."""

    day = models.DateField(unique=True)
    signups = models.PositiveIntegerField(default=0)
    paid = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "daily stats"

    def __str__(self) -> str:
        return f"{self.day}: {self.signups} signups"

    @property
    def conversion(self) -> float:
        return self.paid / self.signups if self.signups else 0.0
