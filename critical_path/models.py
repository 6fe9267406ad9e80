"""The outbox: one ``Job`` row per emitted side effect, and the relay's and rate limits' rows.

A job's state transitions are ``JobQuerySet``'s verbs (``querysets.py``):
every transition is one conditional UPDATE returning a row count; 0 means
someone else got there first and the caller moves on (see the state table in
the docs). All times are the database's (``Now()``), never the host's.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, models, router
from django.db.models import Func, Q
from django.utils.translation import gettext_lazy as _

from critical_path import querysets
from critical_path.querysets import (
    JobQuerySet,
    JobStatus,
    claim_values,
    hand_off_values,
    now_plus,
    success_values,
)

# The queryset and its helpers have a module of their own; they stay importable from here.
__all__ = [
    "Dashboard",
    "DeadLetter",
    "FailedJob",
    "Job",
    "JobQuerySet",
    "RateLimit",
    "RelayHeartbeat",
    "claim_values",
    "error_line",
    "hand_off_values",
    "job_databases",
    "new_uuid",
    "now_plus",
    "queue_wait",
    "success_values",
]


#: The last UUID's milliseconds and 74-bit counter in this process, so that its UUIDs never go backwards.
_last_uuid = (0, 0)
_uuid_lock = threading.Lock()


def new_uuid() -> uuid.UUID:
    """A new job's UUID: time-ordered (RFC 9562 version 7), 48 bits of Unix milliseconds then 74 random bits.

    Time-ordered so that the unique index on it grows at its right edge, as the
    primary key's does, instead of taking each emit's entry at a random page.
    Within one millisecond a process counts up from its last UUID (RFC 9562's
    monotonic random), so its UUIDs are strictly increasing.
    """
    global _last_uuid
    milliseconds, counter = time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10)) >> 6
    with _uuid_lock:
        last_milliseconds, last_counter = _last_uuid
        if milliseconds <= last_milliseconds:
            milliseconds, counter = last_milliseconds, last_counter + 1
            if counter >> 74:  # the counter overflowed: borrow the next millisecond
                milliseconds, counter = milliseconds + 1, 0
        _last_uuid = (milliseconds, counter)
    value = milliseconds << 80 | 0x7 << 76 | (counter >> 62) << 64 | 0x2 << 62 | (counter & (1 << 62) - 1)
    return uuid.UUID(int=value)


class RandomUUID(Func):
    """A random UUID (version 4) made by the database: the column's default for rows written without one.

    Only processes that predate the column write such rows, during a rolling
    deploy; the emit names the column with a ``new_uuid()``.
    """

    function = "gen_random_uuid"
    template = "%(function)s()"
    output_field = models.UUIDField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # Django stores a UUID on SQLite as 32 hex digits; version 4 and the RFC variant in their places.
        template = (
            "lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2) || "
            "substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2))"
        )
        return self.as_sql(compiler, connection, template=template, **extra_context)


class Job(models.Model):
    """One emitted side effect: what to run, with what, and how far it got."""

    Status = JobStatus

    # The groups of statuses the queryset tests; ``querysets`` says what each is for.
    LIVE_STATUSES = querysets.LIVE_STATUSES
    CLAIMABLE_STATUSES = querysets.CLAIMABLE_STATUSES
    REPLAYABLE_STATUSES = querysets.REPLAYABLE_STATUSES
    DISCARDABLE_STATUSES = querysets.DISCARDABLE_STATUSES
    COALESCING_STATUSES = querysets.COALESCING_STATUSES
    ORDERED_STATUSES = querysets.ORDERED_STATUSES

    id = models.BigAutoField(primary_key=True)
    effect = models.CharField(_("side effect"), max_length=255)
    # db_default too: during a rolling deploy, processes that predate the column still insert jobs.
    version = models.PositiveSmallIntegerField(
        _("payload version"),
        default=1,
        db_default=1,
        help_text=_("The side effect's version when the job was emitted."),
    )
    args = models.JSONField(_("positional arguments"), default=list)
    kwargs = models.JSONField(_("keyword arguments"), default=dict)
    # db_default: rows that processes predating the column insert during a rolling deploy get a random one.
    uuid = models.UUIDField(
        _("UUID"),
        default=new_uuid,
        db_default=RandomUUID(),
        unique=True,
        editable=False,
        help_text=_("Unique everywhere, for good: the idempotency key of a job emitted without one."),
    )
    # NULL, not "", for no key: keyless jobs stay out of the unique index below.
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    # NULL for jobs that do not coalesce (most): they add no entry to the coalescing index below.
    coalesce_key = models.CharField(  # noqa: DJ001
        _("coalesce key"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("Jobs of one side effect with equal keys coalesce: a newer one not yet started runs instead."),
    )
    # NULL for no key, as above: unkeyed jobs stay out of the ordering index.
    ordering_key = models.CharField(  # noqa: DJ001
        _("ordering key"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("Jobs with the same ordering key run one at a time, in the order they were emitted."),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # The fence of every outcome: counted by each claim and never given back (a replay resets attempts, a
    # rate limit's postponement gives one back), so a worker that overran its lease matches no newer claim.
    # db_default, like version's: rows inserted by processes that predate the column start at 0.
    claims = models.PositiveIntegerField(
        _("claims"),
        default=0,
        db_default=0,
        help_text=_("Times a worker claimed the job; an outcome is recorded only by the latest claim's worker."),
    )
    max_attempts = models.PositiveIntegerField(_("max attempts"))
    available_at = models.DateTimeField(_("available at"))
    queue = models.CharField(_("queue"), max_length=255)
    priority = models.PositiveSmallIntegerField(_("priority"), default=0)
    republished = models.PositiveIntegerField(
        _("republished"), default=0, help_text=_("Times the relay published the job again, its message taken for lost.")
    )
    correlation_id = models.CharField(_("correlation id"), max_length=64, blank=True)
    # db_default, like version's: rows inserted by processes that predate the column get ''.
    trace_context = models.CharField(
        _("trace context"),
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text=_("W3C traceparent (and tracestate) of the span the job was emitted in."),
    )
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"))
    enqueued_at = models.DateTimeField(_("enqueued at"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    error_history = models.JSONField(_("error history"), default=list, blank=True)
    # Django tasks only (critical_path.backends): what the function returned, and the worker of the latest
    # attempt. Nullable and db_default, so the emit's INSERT does not name them.
    return_value = models.JSONField(
        _("return value"), null=True, blank=True, help_text=_("What a Django task returned (JSON).")
    )
    worker_id = models.CharField(
        _("worker"),
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text=_("The worker running, or that last ran, a Django task's attempt (host:process id)."),
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        permissions = [
            ("replay_job", _("Can replay jobs")),
            ("discard_job", _("Can discard jobs")),
            ("view_job_payload", _("Can view jobs' raw payloads")),
        ]
        indexes = [
            # The relay touches only live rows: these stay small however many finished jobs the table holds.
            models.Index(
                fields=["available_at"], name="critical_path_job_due", condition=Q(status__in=["pending", "failed"])
            ),
            models.Index(fields=["enqueued_at"], name="critical_path_job_enqueued", condition=Q(status="enqueued")),
            models.Index(fields=["lease_expires_at"], name="critical_path_job_running", condition=Q(status="running")),
            # Bounded windows over finished rows (the dashboard, pruning) and the dead letters, newest first.
            models.Index(
                fields=["finished_at"],
                name="critical_path_job_finished",
                condition=Q(status__in=["succeeded", "discarded", "coalesced"]),
            ),
            models.Index(fields=["finished_at"], name="critical_path_job_dead", condition=Q(status="dead")),
            # The claim's test for a newer equal job that has not started: live coalescing jobs only.
            models.Index(
                fields=["effect", "coalesce_key", "id"],
                name="critical_path_job_coalesce",
                condition=Q(coalesce_key__isnull=False, status__in=["pending", "enqueued"]),
            ),
            # The claim's look at a keyed job's predecessors: only keyed rows that still hold their key's line.
            models.Index(
                fields=["ordering_key", "id"],
                name="critical_path_job_ordering",
                condition=Q(
                    ordering_key__isnull=False, status__in=["pending", "enqueued", "running", "failed", "dead"]
                ),
            ),
        ]
        constraints = [
            # Partial: the keyless jobs (most of them) add no entry to it, which keeps the emit's INSERT lean.
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="critical_path_job_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(priority__lte=9), name="critical_path_job_priority_range"),
        ]

    def __str__(self) -> str:
        return f"{self.effect} #{self.pk} ({self.status})"

    def blocker(self) -> Job | None:
        """The job that keeps this one waiting (the first of its ordering key's line), or None if it does not wait."""
        if not self.ordering_key or self.status not in self.CLAIMABLE_STATUSES:
            return None
        ahead = Job.objects.using(self.database).filter(
            ordering_key=self.ordering_key, status__in=self.ORDERED_STATUSES
        )
        running = ahead.filter(status=Job.Status.RUNNING).exclude(pk=self.pk).order_by("pk").first()
        return ahead.filter(pk__lt=self.pk).order_by("pk").first() or running

    @property
    def effective_idempotency_key(self) -> str:
        """The key a side effect gives the outside world: the one it was emitted with, or else its UUID.

        The UUID is unique across databases, environments and resets, so a
        service that remembers keys never takes a new job for a repeat.
        """
        return self.idempotency_key or str(self.uuid)

    @property
    def database(self) -> str:
        """The alias the job was read from or saved to; a multi-database app must never guess ``"default"``."""
        if self._state.db is None:
            raise RuntimeError(f"job {self.pk} was neither read from a database nor saved to one")
        return self._state.db

    @property
    def queue_wait(self) -> timedelta | None:
        """How long the job waited for a worker (DESIGN's queue wait); ``None`` until it has started."""
        if self.started_at is None:
            return None
        return queue_wait(self.available_at, self.enqueued_at, self.started_at)

    @property
    def error_line(self) -> str:
        """The line of the last error that names it."""
        return error_line(self.last_error)


def queue_wait(available_at: datetime, enqueued_at: datetime | None, started_at: datetime) -> timedelta:
    """``started_at - max(enqueued_at, available_at)``: the wait for a worker once the job could run, never below 0.

    The one definition behind the worker's histogram and the benchmarks; the dashboard computes the same in SQL.
    """
    ready = max(available_at, enqueued_at) if enqueued_at is not None else available_at
    return max(timedelta(0), started_at - ready)


def error_line(text: str) -> str:
    """The line of a traceback that names the error: its last non-empty line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def job_databases() -> list[str]:
    """Every database alias the outbox lives on: those the router lets ``Job`` migrate to."""
    return [alias for alias in connections.settings if router.allow_migrate_model(alias, Job)]


class FailedJob(Job):
    """Failed jobs waiting for their next attempt: an admin entry of their own."""

    class Meta:
        proxy = True
        verbose_name = _("failed job")
        verbose_name_plural = _("failed jobs")


class DeadLetter(Job):
    """Dead-lettered jobs, waiting for someone to replay or discard them: an admin entry of their own."""

    class Meta:
        proxy = True
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")


class Dashboard(Job):
    """The outbox's health page in the admin; a proxy so the admin index links it and a permission guards it."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")


class RateLimit(models.Model):
    """The token bucket of one rate-limited side effect, shared by every worker (see ``rate_limits``)."""

    effect = models.CharField(_("side effect"), max_length=255, unique=True)
    full_at = models.DateTimeField(_("full at"), help_text=_("When the bucket will hold all its tokens again."))

    class Meta:
        verbose_name = _("rate limit")
        verbose_name_plural = _("rate limits")

    def __str__(self) -> str:
        return self.effect


class RelayHeartbeat(models.Model):
    """What one relay process has done on this database, updated at each of its passes."""

    name = models.CharField(_("relay"), max_length=255, unique=True, help_text=_("host:process id"))
    started_at = models.DateTimeField(_("started at"))
    last_run_at = models.DateTimeField(_("last pass at"))
    passes = models.PositiveBigIntegerField(_("passes"), default=0)
    published = models.PositiveBigIntegerField(_("published"), default=0)
    republished = models.PositiveBigIntegerField(_("republished"), default=0)
    rescued = models.PositiveBigIntegerField(_("rescued"), default=0)
    errors = models.PositiveBigIntegerField(_("passes with errors"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)

    class Meta:
        verbose_name = _("relay heartbeat")
        verbose_name_plural = _("relay heartbeats")

    def __str__(self) -> str:
        return self.name
