from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CriticalPathConfig(AppConfig):
    name = "critical_path"
    verbose_name = _("Critical path")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from critical_path import checks  # noqa: F401  (registers the system checks)
