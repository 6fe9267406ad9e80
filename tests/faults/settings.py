"""Settings of the processes a fault-injection test starts: the test settings, tuned from the environment.

Each ``CRITICAL_PATH_<NAME>`` below is read from the environment when set, so a
test gives each worker, relay or emitter the short timeouts its scenario needs.
"""

import os

from tests.faults.brokers import transport_options
from tests.settings import *  # noqa: F403
from tests.settings import CELERY_BROKER_URL

_SECONDS = (
    "TIME_LIMIT", "LEASE_GRACE", "RETRY_BACKOFF", "RETRY_BACKOFF_MAX", "RELAY_GRACE", "REPUBLISH_AFTER",
    "DISPATCHER_EXIT_TIMEOUT", "DISPATCHER_LINGER", "WORKER_LIVENESS_INTERVAL",
)  # fmt: skip
_COUNTS = ("MAX_ATTEMPTS", "RELAY_BATCH_SIZE", "DISPATCHER_BATCH_SIZE", "DISPATCHER_QUEUE_SIZE", "WORKER_METRICS_PORT")
_TEXTS = ("WORKER_LIVENESS_FILE",)

_TYPES = {**dict.fromkeys(_SECONDS, float), **dict.fromkeys(_COUNTS, int), **dict.fromkeys(_TEXTS, str)}

for _name, _type in _TYPES.items():
    _value = os.environ.get(f"CRITICAL_PATH_{_name}")
    if _value:
        globals()[f"CRITICAL_PATH_{_name}"] = _type(_value)

if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = transport_options(CELERY_BROKER_URL)
    # Redis gives an unacknowledged message (its worker died) to another worker after this many seconds.
    if os.environ.get("CRITICAL_PATH_FAULTS_VISIBILITY_TIMEOUT"):
        CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = float(
            os.environ["CRITICAL_PATH_FAULTS_VISIBILITY_TIMEOUT"]
        )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One message at a time per process, so a killed worker holds at most the job it runs.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers keep their database connections (Celery's defaults otherwise); deliver replaces a broken one.
for _database in DATABASES.values():  # noqa: F405
    _database["CONN_MAX_AGE"] = 600
