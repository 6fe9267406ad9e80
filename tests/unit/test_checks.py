import pytest
from django.core.checks import Error, Warning
from django.db import connections

from critical_path import checks
from tests.effects import soft_limit_only


@pytest.fixture
def celery_conf(monkeypatch):
    """Change the current Celery app's configuration (the one the checks read) for one test."""
    from celery import current_app

    app = current_app._get_current_object()  # not always tests.celery_app's: another app may be current
    saved = {}

    def set_(**values):
        for name, value in values.items():
            saved.setdefault(name, app.conf.get(name))
            app.conf[name] = value

    yield set_
    for name, value in saved.items():
        app.conf[name] = value


def test_valid_settings_pass():
    assert checks.check_settings() == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAX_ATTEMPTS", 0, "a positive int"),
        ("RETRY_BACKOFF", "10", "a positive number of seconds"),
        ("DISPATCHER_QUEUE_SIZE", 1.5, "a positive int"),
        ("REPUBLISH_AFTER", 0, "a positive number of seconds"),
    ],
)
def test_invalid_setting_is_an_error(settings, name, value, expected):
    setattr(settings, f"CRITICAL_PATH_{name}", value)
    assert checks.check_settings() == [
        Error(
            f"CRITICAL_PATH_{name} is {value!r}; it must be {expected}.",
            hint=f"Set CRITICAL_PATH_{name} to {expected}, or remove it to use the default.",
            id="critical_path.E001",
        )
    ]


def test_invalid_store_results_and_default_queue_are_errors(settings):
    settings.CRITICAL_PATH_STORE_RESULTS = "yes"
    settings.CRITICAL_PATH_EAGER = 1
    settings.CRITICAL_PATH_DEFAULT_QUEUE = ""
    assert [error.msg for error in checks.check_settings()] == [
        "CRITICAL_PATH_STORE_RESULTS is 'yes'; it must be True or False.",
        "CRITICAL_PATH_EAGER is 1; it must be True or False.",
        "CRITICAL_PATH_DEFAULT_QUEUE is ''; it must be a queue name or None.",
    ]


@pytest.mark.parametrize("value", [-0.1, 2, "0.02", None])
def test_dispatcher_linger_out_of_range_is_an_error(settings, value):
    settings.CRITICAL_PATH_DISPATCHER_LINGER = value
    assert [error.msg for error in checks.check_settings()] == [
        f"CRITICAL_PATH_DISPATCHER_LINGER is {value!r}; it must be a number of seconds from 0 to 1."
    ]


def test_pickle_is_an_error(celery_conf):
    assert checks.check_celery_content() == []
    celery_conf(accept_content=["json", "pickle"])
    assert checks.check_celery_content() == [
        Error(
            "The Celery app accepts pickle: anyone who can write to the broker can run code on the workers.",
            hint="critical_path's messages are JSON. Set CELERY_ACCEPT_CONTENT = ['json'] and "
            "CELERY_TASK_SERIALIZER = 'json'.",
            id="critical_path.E002",
        )
    ]


def test_unsupported_database_is_an_error(monkeypatch):
    assert checks.check_databases() == []
    monkeypatch.setattr(connections["other"], "vendor", "oracle")
    assert checks.check_databases() == [
        Error(
            "Database 'other' uses oracle, which critical_path does not support.",
            hint="Route critical_path's Job model to a postgresql or sqlite database "
            "(a database router's allow_migrate and db_for_write).",
            id="critical_path.E003",
        )
    ]


def test_short_redis_visibility_timeout_is_a_warning(celery_conf, monkeypatch, settings):
    import tests.effects  # noqa: F401 (side effects without a time limit of their own: theirs is the setting's)

    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    celery_conf(broker_transport_options={"visibility_timeout": 3600})
    assert checks.check_visibility_timeout() == []
    settings.CRITICAL_PATH_TIME_LIMIT = 3590
    [warning] = checks.check_visibility_timeout()
    assert warning == Warning(
        "The Redis broker's visibility_timeout (3600 s) is shorter than the longest lease (3650 s = time limit + "
        "CRITICAL_PATH_LEASE_GRACE): Redis redelivers a running job's message, the claim drops the copy, and if "
        "the first worker then dies the job waits for the relay's rescue instead of Redis's redelivery.",
        hint="Raise CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'] above the longest lease, or lower the "
        "side effects' time_limit.",
        id="critical_path.W001",
    )


def test_other_brokers_have_no_visibility_timeout(monkeypatch, settings):
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    settings.CRITICAL_PATH_TIME_LIMIT = 10**6
    assert checks.check_visibility_timeout() == []


def test_soft_limit_not_below_the_default_hard_limit_is_a_warning(settings):
    assert soft_limit_only.soft_time_limit == 240
    assert [warning for warning in checks.check_time_limits() if warning.obj == "tests.effects.soft_limit_only"] == []
    settings.CRITICAL_PATH_TIME_LIMIT = 240
    [warning] = [warning for warning in checks.check_time_limits() if warning.obj == "tests.effects.soft_limit_only"]
    assert warning == Warning(
        "tests.effects.soft_limit_only has soft_time_limit=240 s, not below its hard time limit "
        "(CRITICAL_PATH_TIME_LIMIT, 240 s): the worker kills the attempt before the soft limit can stop it, and the "
        "job waits for its lease to end.",
        hint="Give the side effect a time_limit= above its soft_time_limit, or lower soft_time_limit.",
        obj="tests.effects.soft_limit_only",
        id="critical_path.W002",
    )


@pytest.mark.parametrize("pool", ["solo", "threads", "celery.concurrency.eventlet:TaskPool"])
def test_worker_pool_without_time_limits_is_a_warning(celery_conf, pool):
    assert checks.check_worker_pool() == []
    celery_conf(worker_pool=pool)
    name = pool.split(":")[0].rsplit(".")[-1]
    assert checks.check_worker_pool() == [
        Warning(
            f"CELERY_WORKER_POOL is {name!r}, which enforces no time limit: an attempt that hangs outlives its "
            "lease (time limit + CRITICAL_PATH_LEASE_GRACE), the relay rescues the job, and it runs again while "
            "the first attempt still runs.",
            hint="Run the workers with the prefork (or gevent) pool, or make every side effect bound its own "
            "waits well within its time_limit.",
            id="critical_path.W003",
        )
    ]
