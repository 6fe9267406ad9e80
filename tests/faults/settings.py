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
    "DISPATCHER_EXIT_TIMEOUT",
)  # fmt: skip
_COUNTS = ("MAX_ATTEMPTS", "RELAY_BATCH_SIZE", "DISPATCHER_BATCH_SIZE", "DISPATCHER_QUEUE_SIZE")

for _name in _SECONDS + _COUNTS:
    _value = os.environ.get(f"CRITICAL_PATH_{_name}")
    if _value:
        globals()[f"CRITICAL_PATH_{_name}"] = float(_value) if _name in _SECONDS else int(_value)

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
