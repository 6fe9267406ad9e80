"""System checks (ids ``critical_path.E001`` …, documented in docs/ref/checks.rst)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register

from critical_path.conf import settings

_POSITIVE_NUMBERS = (
    "TIME_LIMIT", "LEASE_GRACE", "RETRY_BACKOFF", "RETRY_BACKOFF_MAX", "DISPATCHER_EXIT_TIMEOUT", "RELAY_GRACE",
    "RELAY_INTERVAL", "BROKER_TIMEOUT", "RELAY_DATABASE_TIMEOUT", "REPUBLISH_AFTER", "REPUBLISH_AFTER_MAX",
    "HEALTH_RELAY_MAX_AGE", "HEALTH_PENDING_MAX_AGE", "WORKER_LIVENESS_INTERVAL",
)  # fmt: skip
_POSITIVE_INTS = (
    "MAX_ATTEMPTS", "ERROR_HISTORY_LIMIT", "DISPATCHER_QUEUE_SIZE", "DISPATCHER_BATCH_SIZE", "RELAY_BATCH_SIZE",
    "ADMIN_ACTION_LIMIT",
)  # fmt: skip
_UNSAFE_CONTENT = {"pickle", "application/x-python-serialize", "yaml", "application/x-yaml"}


@register(Tags.compatibility)
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """E001: a CRITICAL_PATH_* setting has a value of the wrong type or range."""
    errors: list[CheckMessage] = []
    for name in _POSITIVE_NUMBERS + _POSITIVE_INTS:
        value = getattr(settings, name)
        kinds = (int,) if name in _POSITIVE_INTS else (int, float)
        if type(value) not in kinds or not value > 0:
            expected = "a positive int" if name in _POSITIVE_INTS else "a positive number of seconds"
            errors.append(
                Error(
                    f"CRITICAL_PATH_{name} is {value!r}; it must be {expected}.",
                    hint=f"Set CRITICAL_PATH_{name} to {expected}, or remove it to use the default.",
                    id="critical_path.E001",
                )
            )
    limit = settings.HEALTH_DEAD_LETTER_LIMIT
    if type(limit) is not int or limit < 0:
        errors.append(
            Error(
                f"CRITICAL_PATH_HEALTH_DEAD_LETTER_LIMIT is {limit!r}; it must be a whole number, 0 or more.",
                hint="Set it to the dead letters a database may hold while healthy (0: any makes it degraded).",
                id="critical_path.E001",
            )
        )
    linger = settings.DISPATCHER_LINGER
    if type(linger) not in (int, float) or not 0 <= linger <= 1:
        errors.append(
            Error(
                f"CRITICAL_PATH_DISPATCHER_LINGER is {linger!r}; it must be a number of seconds from 0 to 1.",
                hint="Set it to how long a batch may wait for more jobs (0: publish what has come at once).",
                id="critical_path.E001",
            )
        )
    for name in ("STORE_RESULTS", "EAGER"):
        if type(getattr(settings, name)) is not bool:
            errors.append(
                Error(
                    f"CRITICAL_PATH_{name} is {getattr(settings, name)!r}; it must be True or False.",
                    hint="Set it to True or False.",
                    id="critical_path.E001",
                )
            )
    queue = settings.DEFAULT_QUEUE
    if queue is not None and (type(queue) is not str or not queue.strip()):
        errors.append(
            Error(
                f"CRITICAL_PATH_DEFAULT_QUEUE is {queue!r}; it must be a queue name or None.",
                hint="Set it to the queue your workers consume (celery -Q), or None for Celery's default queue.",
                id="critical_path.E001",
            )
        )
    guard = settings.GUARD
    if guard is not None and guard not in ("warn", "raise"):
        errors.append(
            Error(
                f"CRITICAL_PATH_GUARD is {guard!r}; it must be 'warn', 'raise' or None.",
                hint="Set it to 'warn' to log the side effects requests do inline, 'raise' to fail them, or None.",
                id="critical_path.E001",
            )
        )
    return errors


@register(Tags.security)
def check_celery_content(**kwargs: Any) -> list[CheckMessage]:
    """E002: the Celery app accepts or sends pickle or YAML."""
    from celery import current_app

    conf = current_app.conf
    accepted = {str(item).lower() for item in conf.accept_content or ()}
    serializers = {str(conf.task_serializer).lower()}
    unsafe = sorted((accepted | serializers) & _UNSAFE_CONTENT)
    if not unsafe:
        return []
    return [
        Error(
            f"The Celery app accepts {', '.join(unsafe)}: anyone who can write to the broker can run code on the "
            "workers.",
            hint="critical_path's messages are JSON. Set CELERY_ACCEPT_CONTENT = ['json'] and "
            "CELERY_TASK_SERIALIZER = 'json'.",
            id="critical_path.E002",
        )
    ]


@register(Tags.database)
def check_databases(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E003: the outbox is routed to a database whose engine it does not support."""
    from django.db import connections, router

    from critical_path.models import Job
    from critical_path.store.insert import SUPPORTED_VENDORS

    errors: list[CheckMessage] = []
    for alias in connections.settings:
        if not router.allow_migrate_model(alias, Job):
            continue
        vendor = connections[alias].vendor
        if vendor not in SUPPORTED_VENDORS:
            errors.append(
                Error(
                    f"Database {alias!r} uses {vendor}, which critical_path does not support.",
                    hint=f"Route critical_path's Job model to a {' or '.join(SUPPORTED_VENDORS)} database "
                    "(a database router's allow_migrate and db_for_write).",
                    id="critical_path.E003",
                )
            )
    return errors


@register(Tags.compatibility)
def check_visibility_timeout(**kwargs: Any) -> list[CheckMessage]:
    """W001: Redis would redeliver a message while its job's lease still holds it."""
    from celery import current_app

    from critical_path.core.registry import registered

    conf = current_app.conf
    broker = str(conf.broker_url or "")
    if not broker.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
        return []
    visibility = float((conf.broker_transport_options or {}).get("visibility_timeout", 3600))
    limits = [effect.time_limit or settings.TIME_LIMIT for effect in registered()] or [settings.TIME_LIMIT]
    longest_lease = max(limits) + settings.LEASE_GRACE
    if visibility >= longest_lease:
        return []
    return [
        Warning(
            f"The Redis broker's visibility_timeout ({visibility:g} s) is shorter than the longest lease "
            f"({longest_lease:g} s = time limit + CRITICAL_PATH_LEASE_GRACE): Redis redelivers a running job's "
            "message, the claim drops the copy, and if the first worker then dies the job waits for the relay's "
            "rescue instead of Redis's redelivery.",
            hint="Raise CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'] above the longest lease, or lower the "
            "side effects' time_limit.",
            id="critical_path.W001",
        )
    ]


@register(Tags.signals)
def check_bridges(**kwargs: Any) -> list[CheckMessage]:
    """E004-E006: a signal bridge names a sender, a side effect or arguments that cannot work."""
    from critical_path import bridge

    return [error for made in bridge.registered() for error in made.errors()]


@register(Tags.compatibility)
def check_time_limits(**kwargs: Any) -> list[CheckMessage]:
    """W002: a side effect's soft time limit is not below its hard limit, so it can never fire."""
    from critical_path.core.registry import registered

    warnings: list[CheckMessage] = []
    for effect in registered():
        if effect.soft_time_limit is None or effect.time_limit is not None:
            continue  # with both set, @side_effect refused a soft limit that is not below the hard one
        if effect.soft_time_limit >= settings.TIME_LIMIT:
            warnings.append(
                Warning(
                    f"{effect.path} has soft_time_limit={effect.soft_time_limit:g} s, not below its hard time limit "
                    f"(CRITICAL_PATH_TIME_LIMIT, {settings.TIME_LIMIT:g} s): the worker kills the attempt before "
                    "the soft limit can stop it, and the job waits for its lease to end.",
                    hint="Give the side effect a time_limit= above its soft_time_limit, or lower soft_time_limit.",
                    obj=effect.path,
                    id="critical_path.W002",
                )
            )
    return warnings


#: Celery pools that enforce no time limit (Celery enforces them in prefork and gevent pools only).
_POOLS_WITHOUT_TIME_LIMITS = {"solo", "threads", "thread", "eventlet"}


@register(Tags.compatibility)
def check_celery_app(**kwargs: Any) -> list[CheckMessage]:
    """E010: no Celery app is loaded while CELERY_BROKER_URL is set; W005: no app and no broker, or an app that
    does not read CELERY_BROKER_URL."""
    from celery import current_app

    from critical_path.publishing import celery_app

    found = celery_app.problem(current_app)
    if found is None:
        return []
    message, hint = found.message[0].upper() + found.message[1:] + ".", found.hint[0].upper() + found.hint[1:] + "."
    if found.refuse:
        return [Error(message, hint=hint, id="critical_path.E010")]
    return [Warning(message, hint=hint, id="critical_path.W005")]


@register(Tags.compatibility)
def check_worker_pool(**kwargs: Any) -> list[CheckMessage]:
    """W003: the configured worker pool enforces no time limit, so an attempt can outlive its lease."""
    from celery import current_app

    pool = str(current_app.conf.worker_pool or "prefork")  # an alias, or "celery.concurrency.solo:TaskPool"
    pool = pool.split(":", 1)[0].rsplit(".", 1)[-1].lower()
    if pool not in _POOLS_WITHOUT_TIME_LIMITS:
        return []
    return [
        Warning(
            f"CELERY_WORKER_POOL is {pool!r}, which enforces no time limit: an attempt that hangs outlives its "
            "lease (time limit + CRITICAL_PATH_LEASE_GRACE), the relay rescues the job, and it runs again while "
            "the first attempt still runs.",
            hint="Run the workers with the prefork (or gevent) pool, or make every side effect bound its own "
            "waits well within its time_limit.",
            id="critical_path.W003",
        )
    ]


#: The tasks backend critical_path provides, as ``TASKS`` names it.
TASKS_BACKEND = "critical_path.backends.CriticalPathBackend"


@register(Tags.compatibility)
def check_task_backends(**kwargs: Any) -> list[CheckMessage]:
    """E007-E009: ``TASKS`` uses critical_path's backend without the tasks framework, or with bad options or tasks."""
    from django.conf import settings as django_settings

    configured = getattr(django_settings, "TASKS", None) or {}
    ours = {alias: params for alias, params in configured.items() if params.get("BACKEND") == TASKS_BACKEND}
    if not ours:
        return []
    try:
        from critical_path import backends
    except ImportError as exc:
        return [
            Error(
                f"TASKS uses {TASKS_BACKEND} (aliases {sorted(ours)}), and Django's tasks framework cannot be "
                f"imported: {exc}.",
                hint="Django 6.0 and later ship it as django.tasks; on Django 5.2 install the django-tasks package "
                "(pip install 'django-critical-path[tasks]') and add 'django_tasks' to INSTALLED_APPS.",
                id="critical_path.E007",
            )
        ]
    return [error for alias, params in ours.items() for error in backends.check_backend(alias, params)]
