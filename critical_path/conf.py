"""Settings, read live from ``django.conf.settings`` so ``override_settings`` just works.

Every setting is ``CRITICAL_PATH_<NAME>``; the defaults are the annotated class
attributes below. Nothing here is read at import time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

PREFIX = "CRITICAL_PATH_"


class Settings:
    #: Celery queue for side effects that name none; ``None`` means Celery's ``task_default_queue``.
    DEFAULT_QUEUE: str | None = None
    #: Attempts before a failing job is dead-lettered, for side effects that set none.
    MAX_ATTEMPTS: int = 5
    #: Hard time limit (seconds) of one attempt, for side effects that set none.
    TIME_LIMIT: float = 300.0
    #: Added to a side effect's time limit to make its lease: a job is only rescued
    #: once its worker cannot possibly still be running it.
    LEASE_GRACE: float = 60.0
    #: First retry delay in seconds; it doubles with each attempt, with jitter.
    RETRY_BACKOFF: float = 10.0
    #: Longest retry delay in seconds.
    RETRY_BACKOFF_MAX: float = 3600.0
    #: Errors kept in a job's history (the oldest are dropped first).
    ERROR_HISTORY_LIMIT: int = 10
    #: Ids the per-process dispatcher holds before it drops new ones for the relay.
    DISPATCHER_QUEUE_SIZE: int = 10_000
    #: Jobs the dispatcher publishes, then marks ``enqueued`` with one UPDATE.
    DISPATCHER_BATCH_SIZE: int = 100
    #: Seconds the dispatcher waits for more committed jobs before it publishes a batch that is not full:
    #: each batch costs one UPDATE and one broker round trip, taken from the CPU of the process's requests.
    DISPATCHER_LINGER: float = 0.02
    #: Seconds the dispatcher may spend flushing at interpreter exit.
    DISPATCHER_EXIT_TIMEOUT: float = 2.0
    #: Seconds one broker call of the dispatcher or the relay may take (connect, send, confirm), where
    #: ``CELERY_BROKER_TRANSPORT_OPTIONS`` sets no timeout of its own (Redis and AMQP transports).
    BROKER_TIMEOUT: float = 5.0
    #: Seconds a pending job is left to the dispatcher before the relay publishes it.
    RELAY_GRACE: float = 30.0
    #: A delayed job or a retry due within this many seconds is handed to the broker at once, with Celery's
    #: ``eta``, so that it starts when it is due; one due later is published by the relay, which wakes for it.
    #: Keep it well below the broker's redelivery timeout (Redis's ``visibility_timeout``) and ``REPUBLISH_AFTER``.
    TIMED_HANDOFF_WITHIN: float = 60.0
    #: Jobs one relay pass publishes per database before it commits.
    RELAY_BATCH_SIZE: int = 500
    #: Seconds between the passes of ``manage.py relay_outbox`` (and of the installed beat schedule).
    RELAY_INTERVAL: float = 5.0
    #: Seconds any one relay query may run on PostgreSQL (``statement_timeout``, ``lock_timeout``).
    RELAY_DATABASE_TIMEOUT: float = 30.0
    #: Seconds a job may stay ``enqueued`` before the relay takes its message for lost and publishes it
    #: again. Keep it longer than jobs normally wait in the broker's queue.
    REPUBLISH_AFTER: float = 600.0
    #: The wait before each further republish of the same job doubles, up to this many seconds.
    REPUBLISH_AFTER_MAX: float = 21_600.0
    #: Payload keys the admin masks (case-insensitive substrings), unless the user may view raw payloads.
    ADMIN_SECRET_KEYS: tuple[str, ...] = (
        "password", "passwd", "secret", "token", "authorization", "api_key", "apikey", "cookie", "session",
        "credential", "private_key", "signature",
    )  # fmt: skip
    #: Jobs one admin action may change without a confirmation page listing how many it will change.
    ADMIN_ACTION_LIMIT: int = 1000
    #: Store each delivery's result with Celery's result backend (one more write per job).
    STORE_RESULTS: bool = False
    #: Seconds since the last relay pass after which the health check reports the outbox degraded.
    HEALTH_RELAY_MAX_AGE: float = 60.0
    #: Seconds the oldest due pending job may wait before the health check reports the outbox degraded.
    HEALTH_PENDING_MAX_AGE: float = 300.0
    #: Dead letters a database may hold before the health check reports the outbox degraded.
    HEALTH_DEAD_LETTER_LIMIT: int = 0
    #: Port of the Prometheus exporter a Celery worker's main process serves (``None``: no exporter).
    WORKER_METRICS_PORT: int | None = None
    #: File a Celery worker's main process touches while it runs and removes when it stops (``None``: no file).
    WORKER_LIVENESS_FILE: str | None = None
    #: Seconds between two touches of ``WORKER_LIVENESS_FILE``.
    WORKER_LIVENESS_INTERVAL: float = 10.0
    #: Request header holding the request's correlation id (read and echoed by ``CorrelationIdMiddleware``).
    CORRELATION_HEADER: str = "X-Request-ID"
    #: What ``CriticalPathGuardMiddleware`` does with the side effects a request does inline: ``"warn"`` (log
    #: each), ``"raise"`` (raise ``InlineSideEffect``) or ``None`` (nothing).
    GUARD: str | None = None
    #: Tests only: run each committed job in this process, right after commit, instead of publishing it.
    EAGER: bool = False

    def __getattribute__(self, name: str) -> Any:
        if name.isupper():
            return getattr(django_settings, PREFIX + name, object.__getattribute__(self, name))
        return object.__getattribute__(self, name)

    def names(self) -> list[str]:
        return [name for name in type(self).__annotations__ if name.isupper()]


settings = Settings()
