from django.db import models


class Account(models.Model):
    email = models.EmailField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email


class WelcomeEmail(models.Model):
    """What the welcome side effect did; the demo issue replaces this with real SMTP."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE)
    sent_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"welcome email to {self.account}"
