from django.apps import AppConfig


class SignupsConfig(AppConfig):
    name = "example_project.signups"
    default_auto_field = "django.db.models.BigAutoField"
