"""Test settings: two database aliases always; SQLite files by default, PostgreSQL with DATABASE_URL.

A Celery worker started by the tests runs with these settings and
``CRITICAL_PATH_TEST_WORKER=1``, which points it at the test databases.
"""

import importlib.util
import os
from pathlib import Path
from typing import Any

import dj_database_url
import django

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CRITICAL_PATH_TEST_DATA", BASE_DIR / ".test-data"))
DATA_DIR.mkdir(parents=True, exist_ok=True)
WORKER = os.environ.get("CRITICAL_PATH_TEST_WORKER") == "1"

SECRET_KEY = "tests"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "critical_path",
    "tests.testapp",
    "example_project.signups",  # the example's tests (tests/example) run with these settings
]
if importlib.util.find_spec("django_celery_beat"):  # the beat extra; it supports Django < 6.1 only
    INSTALLED_APPS.insert(INSTALLED_APPS.index("django_celery_results"), "django_celery_beat")
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the backport of Django 6's tasks framework

# Django tasks (tests/unit/backends/test_backends.py): "default" writes its jobs on the router's database, "other" on
# "other".
TASKS = {
    "default": {"BACKEND": "critical_path.backends.CriticalPathBackend", "QUEUES": ["default", "reports"]},
    "other": {
        "BACKEND": "critical_path.backends.CriticalPathBackend",
        "QUEUES": [],
        "OPTIONS": {"DATABASE": "other", "MAX_ATTEMPTS": 2},
    },
}

MIDDLEWARE = [
    "critical_path.middleware.CriticalPathGuardMiddleware",  # off unless a test sets CRITICAL_PATH_GUARD
    "critical_path.middleware.CorrelationIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
SALES_EMAIL = "sales@signups.example"  # the example's upgrade notice (tests/example)
if django.VERSION >= (6, 1):
    MAILERS: dict[str, dict[str, Any]] = {"default": {}}  # Django's test set-up swaps in its in-memory backend
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _database(alias: str) -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL")
    if url:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
        # Two checkouts can test side by side on one server with distinct prefixes.
        name = f"{os.environ.get('CRITICAL_PATH_TEST_DB_PREFIX', 'test_critical_path')}_{alias}"
        config["TEST"] = {"NAME": name}
    else:
        name = str(DATA_DIR / f"{alias}.sqlite3")
        config = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / f"{alias}-dev.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": name},
        }
    if WORKER:
        config["NAME"] = name
    return config


DATABASES = {"default": _database("default"), "other": _database("other")}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    _broker_dir.mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 5}
# Results are stored only for side effects published with CRITICAL_PATH_STORE_RESULTS on.
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Messages of tests that use no worker go to a queue no worker consumes.
CRITICAL_PATH_DEFAULT_QUEUE = os.environ.get("CRITICAL_PATH_TEST_QUEUE", "critical-path-tests-idle")
CRITICAL_PATH_RETRY_BACKOFF = 0.2
CRITICAL_PATH_RETRY_BACKOFF_MAX = 1.0

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"job": {"()": "critical_path.observability.log.JobContextFilter"}},
    "formatters": {
        "job": {"format": "%(levelname)s %(name)s [%(correlation_id)s job=%(job_id)s attempt=%(attempt)s] %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["job"], "formatter": "job"}},
    # A worker's root logger has Celery's handler, which would print each line again; tests read the root's.
    "loggers": {
        "critical_path": {"handlers": ["console"], "level": "INFO" if WORKER else "WARNING", "propagate": not WORKER}
    },
}
