"""The dashboard's, the stats' and the relay's queries read their partial indexes, never the whole table.

Ten thousand finished jobs and a few live ones, analysed: a query whose plan
scans ``critical_path_job`` sequentially would read every finished row on each
page load or relay pass, which is what grows with the table.
"""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models.functions import Now
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from critical_path.models import Job
from critical_path.observability import metrics
from critical_path.operations import stats
from critical_path.relay import passes
from tests.factories import make_job

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="query plans are PostgreSQL's"),
    pytest.mark.django_db(transaction=True, databases="__all__"),
]

FINISHED = """
INSERT INTO critical_path_job (effect, args, kwargs, status, attempts, max_attempts, available_at, queue, priority,
    republished, correlation_id, created_at, enqueued_at, started_at, finished_at, last_error, error_history)
SELECT 'tests.effects.note', '[]', '{}', 'succeeded', 1, 3, t, 'q', 0, 0, '', t, t, t, t, '', '[]'
FROM (SELECT NOW() - n * INTERVAL '1 minute' AS t FROM generate_series(1, 10000) AS n) AS times
"""


@pytest.fixture
def big_table():
    with connection.cursor() as cursor:
        cursor.execute(FINISHED)
    make_job(Job.Status.DEAD, finished_at=Now())
    make_job(Job.Status.FAILED, started_at=Now())
    make_job(Job.Status.PENDING)
    make_job(Job.Status.ENQUEUED, enqueued_at=Now())
    make_job(Job.Status.RUNNING, started_at=Now(), lease_expires_at=Now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE critical_path_job")


def plans(sqls):
    """The plans of the statements that read the job table."""
    found = []
    with connection.cursor() as cursor:
        for sql, params in sqls:
            if "critical_path_job" in sql and sql.lstrip("(").startswith("SELECT"):
                cursor.execute("EXPLAIN " + sql, params)
                found.append((sql, "\n".join(row[0] for row in cursor.fetchall())))
    assert found
    return found


def captured(call):
    with CaptureQueriesContext(connection) as queries:
        call()
    return [(query["sql"], None) for query in queries.captured_queries]


def assert_indexed(found):
    for sql, plan in found:
        assert "Seq Scan on critical_path_job" not in plan, f"{sql}\n{plan}"


def test_the_dashboard_reads_indexes(big_table):
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    url = reverse("admin:critical_path_dashboard_changelist")
    assert_indexed(plans(captured(lambda: client.get(url))))


def test_the_windowed_stats_and_the_outbox_gauges_read_indexes(big_table):
    # Without finished_within, stats.collect counts every finished row exactly, by design.
    assert_indexed(plans(captured(lambda: stats.collect("default", finished_within=stats.HOUR))))
    assert_indexed(plans(captured(lambda: metrics.update_outbox_gauges("default"))))


def test_the_relay_s_selections_read_indexes(big_table):
    selections = [
        passes.due_jobs("default")[:100],
        passes.stuck_jobs("default")[:100],
        Job.objects.lease_expired().order_by("lease_expires_at")[:100],
    ]
    assert_indexed(plans([query.query.sql_with_params() for query in selections]))
