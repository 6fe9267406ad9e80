"""Fabricated job rows in any state, for tests of transitions (no worker involved)."""

from django.db.models.functions import Now

from critical_path.models import Job


def make_job(status=Job.Status.PENDING, *, using="default", effect="tests.effects.note", **fields):
    values = {
        "effect": effect,
        "args": ["fabricated"],
        "kwargs": {},
        "status": status,
        "max_attempts": 3,
        "queue": "critical-path-tests-idle",
        "created_at": Now(),
        "available_at": Now(),
        "claims": fields.get("attempts", 0),  # as if each attempt had been claimed once
        **fields,
    }
    job = Job.objects.using(using).create(**values)
    job.refresh_from_db()
    return job
