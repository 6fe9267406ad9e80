from django.db import models


class Ledger(models.Model):
    """One row per run of a test side effect: what ran, for which key, at which attempt."""

    name = models.CharField(max_length=100)
    idempotency_key = models.CharField(max_length=255)
    attempt = models.PositiveIntegerField()
    value = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} {self.idempotency_key} attempt {self.attempt}"


class Account(models.Model):
    email = models.EmailField()

    def __str__(self) -> str:
        return self.email
