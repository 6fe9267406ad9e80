from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CriticalPathConfig(AppConfig):
    name = "critical_path"
    verbose_name = _("Critical path")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import after_setup_logger, after_setup_task_logger

        from critical_path import checks, log  # noqa: F401  (checks registers the system checks)

        # A worker's own log handlers get the job context fields too.
        after_setup_logger.connect(log.install, weak=False, dispatch_uid="critical_path.log")
        after_setup_task_logger.connect(log.install, weak=False, dispatch_uid="critical_path.log.task")
