"""Settings of the latency benchmark: PostgreSQL (BENCH_DATABASE_URL) and a Redis broker (BENCH_BROKER_URL)."""

import os

import dj_database_url

from benchmarks import peers

SECRET_KEY = "benchmark"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "critical_path",
    "benchmarks.benchapp",
    *peers.installed_apps(),  # procrastinate, django-tasks: the latency benchmark's peers, where installed
]
# The admin, for the dashboard benchmark.
ROOT_URLCONF = "benchmarks.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
# A new user's settings: persistent connections (CONN_MAX_AGE), and Celery's defaults otherwise.
# BENCH_DB_REUSE_MAX=1000 sets CELERY_DB_REUSE_MAX, which Celery's Django fixup reads for other tasks;
# BENCH_CONN_MAX_AGE=0 gives Django's default, a connection per request and per job.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ["BENCH_DATABASE_URL"],
        conn_max_age=int(os.environ.get("BENCH_CONN_MAX_AGE", "600")),
    )
}
CELERY_DB_REUSE_MAX = int(os.environ.get("BENCH_DB_REUSE_MAX", "0")) or None
CELERY_BROKER_URL = os.environ["BENCH_BROKER_URL"]
# How long a broker operation may block (seconds): what delay_on_commit waits per try on a hung broker.
BROKER_TIMEOUT = float(os.environ.get("BENCH_BROKER_TIMEOUT", "5"))
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": BROKER_TIMEOUT, "socket_connect_timeout": BROKER_TIMEOUT}
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CRITICAL_PATH_DEFAULT_QUEUE = "bench"
if "BENCH_TIMED_HANDOFF_WITHIN" in os.environ:  # seconds; unset: critical_path's default
    CRITICAL_PATH_TIMED_HANDOFF_WITHIN = float(os.environ["BENCH_TIMED_HANDOFF_WITHIN"])
if "BENCH_DISPATCHER_LINGER" in os.environ:  # seconds; unset: critical_path's default
    CRITICAL_PATH_DISPATCHER_LINGER = float(os.environ["BENCH_DISPATCHER_LINGER"])
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "bench"]}}
# procrastinate's worker imports its tasks from here (its autodiscovery looks for tasks.py modules).
PROCRASTINATE_IMPORT_PATHS = ["benchmarks.benchapp.procrastinate_tasks"]
