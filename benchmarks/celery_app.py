import os

from celery import Celery

from benchmarks import statements

# As Celery's Django guide has it: the settings module is known before the app is made, so its Django fixup
# installs (DjangoTask's delay_on_commit among others).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

app = Celery("benchmarks")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A worker started to count statements per job (benchmarks.statements) records them.
statements.install_from_environment()
