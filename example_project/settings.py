"""Settings of the example project: embedded defaults (SQLite, a filesystem broker), or two URLs.

DATABASE_URL=postgres://postgres@127.0.0.1:5432/example
CELERY_BROKER_URL=redis://127.0.0.1:6379/0

The side effects talk to any SMTP server (EMAIL_HOST, EMAIL_PORT) and to the CRM at CRM_URL; the demo
starts local stand-ins for both and sets these variables.
"""

import os
from pathlib import Path

import dj_database_url
import django

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EXAMPLE_DATA_DIR", BASE_DIR / ".demo-data"))
DATA_DIR.mkdir(exist_ok=True)

SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "example_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "critical_path",
    "example_project.signups",
]
MIDDLEWARE = [
    "critical_path.middleware.CriticalPathGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
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

if "DATABASE_URL" in os.environ:
    DATABASES = {"default": dj_database_url.config()}
else:
    # SQLite with several processes (web, worker, relay): WAL, IMMEDIATE transactions, a busy timeout.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "example.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    (DATA_DIR / "broker").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(DATA_DIR / "broker"),
        "data_folder_out": str(DATA_DIR / "broker"),
        "control_folder": str(DATA_DIR / "broker" / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
else:
    # Bounded waits on a hung broker; a visibility timeout longer than the longest lease.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 5, "visibility_timeout": 7200}
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_BROKER_CONNECTION_TIMEOUT = 2

_SMTP = {"host": os.environ.get("EMAIL_HOST", "127.0.0.1"), "port": int(os.environ.get("EMAIL_PORT", "1025"))}
if django.VERSION >= (6, 1):  # MAILERS replaces the EMAIL_* settings
    MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {**_SMTP, "timeout": 10}}
    }
else:
    EMAIL_HOST, EMAIL_PORT, EMAIL_TIMEOUT = _SMTP["host"], _SMTP["port"], 10
DEFAULT_FROM_EMAIL = "welcome@signups.example"
SALES_EMAIL = "sales@signups.example"
CRM_URL = os.environ.get("CRM_URL", "http://127.0.0.1:8025")
CRM_CONNECT_TIMEOUT = 2.0
CRM_READ_TIMEOUT = 10.0

# With DEBUG, log each side effect a request does inline (the signup's ?mode=inline does three).
CRITICAL_PATH_GUARD = "warn" if DEBUG else None

# Short retry delays, so that retries and dead letters show within the demo's minute.
CRITICAL_PATH_RETRY_BACKOFF = 1.0
CRITICAL_PATH_RETRY_BACKOFF_MAX = 10.0

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"critical_path": {"handlers": ["console"], "level": "INFO"}},
}
