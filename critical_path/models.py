"""The outbox: one ``Job`` row per emitted side effect, and its state transitions.

Every transition is one conditional UPDATE returning a row count; 0 means someone
else got there first and the caller moves on (see the state table in the docs).
All times are the database's (``Now()``), never the host's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self

from django.db import models
from django.db.models import Case, Exists, ExpressionWrapper, F, OuterRef, Q, Value, When
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


def now_plus(delta: timedelta) -> ExpressionWrapper[CombinedExpression]:
    """The database's clock plus ``delta``."""
    return ExpressionWrapper(
        Now() + models.Value(delta, output_field=models.DurationField()),
        output_field=models.DateTimeField(),
    )


class JobQuerySet(models.QuerySet["Job"]):
    # Adjectives: narrow the queryset.

    def live(self) -> Self:
        """Jobs that have not reached a final state."""
        return self.filter(status__in=Job.LIVE_STATUSES)

    def dead(self) -> Self:
        return self.filter(status=Job.Status.DEAD)

    def failed(self) -> Self:
        return self.filter(status=Job.Status.FAILED)

    def due(self) -> Self:
        """Pending or failed jobs whose time has come."""
        return self.filter(status__in=[Job.Status.PENDING, Job.Status.FAILED], available_at__lte=Now())

    def lease_expired(self) -> Self:
        """Running jobs whose worker is gone: their lease (hard time limit plus grace) is over."""
        return self.filter(status=Job.Status.RUNNING, lease_expires_at__lt=Now())

    def stuck(self, after: timedelta, cap: timedelta) -> Self:
        """Enqueued jobs whose message looks lost: enqueued longer than ``after``.

        The wait doubles with each republish of the same job, up to ``cap``, so a
        job that only waits behind a long queue is not published over and over.
        """
        waits = Q()
        republished, wait = 0, after
        while wait < cap:
            waits |= Q(republished=republished, enqueued_at__lte=now_plus(-wait))
            republished, wait = republished + 1, wait * 2
        waits |= Q(republished__gte=republished, enqueued_at__lte=now_plus(-cap))
        return self.filter(waits, status=Job.Status.ENQUEUED)

    def unblocked(self) -> Self:
        """Jobs without an ordering key, and keyed jobs whose turn it is.

        A keyed job waits while a job of its key with a lower id is unfinished
        (pending, enqueued, running, failed or dead), or while one with a higher
        id runs (it started before this one's transaction committed). Jobs
        without a key skip the subquery: the ``IS NULL`` test settles them.
        """
        return self.filter(Q(ordering_key__isnull=True) | ~_waits())

    def blocked(self) -> Self:
        """Keyed jobs that must wait for another job of their key (the opposite of ``unblocked``)."""
        return self.filter(_waits())

    def replayable(self) -> Self:
        return self.filter(status__in=Job.REPLAYABLE_STATUSES)

    def discardable(self) -> Self:
        return self.filter(status__in=Job.DISCARDABLE_STATUSES)

    # Verbs: one conditional UPDATE each, returning how many rows moved.

    def hand_off(self) -> int:
        """Pending → enqueued, once the message is published (dispatcher, relay).

        Only from pending: a worker may have claimed, run and failed the job
        before the dispatcher's UPDATE, and a failed job must stay failed until
        its backoff has passed. Only a due one, too: a worker may have claimed
        the job and postponed it (rate limit) before this UPDATE, its message
        consumed; marked enqueued, it would wait for the lost-message republish
        instead of the relay's pass once it is due.
        """
        return self.handed_off_from().update(**hand_off_values())

    def handed_off_from(self) -> Self:
        """The jobs ``hand_off`` moves: pending and due (``critical_path.store.compiled`` compiles the same UPDATE)."""
        return self.filter(status=Job.Status.PENDING, available_at__lte=Now())

    def retry(self) -> int:
        """Failed → enqueued, once its retry is published (relay, holding the row since it read it)."""
        return self.filter(status=Job.Status.FAILED).update(status=Job.Status.ENQUEUED, enqueued_at=Now())

    def republish(self) -> int:
        """Enqueued → enqueued, counted, once a message taken for lost is published again (relay)."""
        return self.filter(status=Job.Status.ENQUEUED).update(enqueued_at=Now(), republished=F("republished") + 1)

    def wait(self) -> int:
        """Enqueued → pending, for a keyed job whose claim found it blocked: its message is gone.

        The job is published again when its turn comes, by whoever finishes the
        job before it (see ``dispatcher.hand_off_next``) or else by the relay,
        which leaves blocked jobs alone: no message goes round in circles.
        """
        return self.filter(status=Job.Status.ENQUEUED).blocked().update(status=Job.Status.PENDING, enqueued_at=None)

    def claim(self, lease: timedelta) -> int:
        """Claimable, due, and first in line of its ordering key, if it has one → running, attempt counted;
        or → coalesced, if a newer equal job will run instead.

        See ``_waits`` for when a keyed job must wait, and ``_coalesced`` for
        when a job is coalesced; a job without an ordering key or a coalesce
        key skips those tests. ``critical_path.store.compiled`` runs this same UPDATE
        for one job without compiling it each time, and first a plain one
        (``claimable_plain``) that the database plans in a fraction of the time.
        """
        return self.claimable().update(**claim_values(lease))

    def claimable(self) -> Self:
        """Claimable, due, and first in line of its ordering key, if it has one."""
        return self.filter(status__in=Job.CLAIMABLE_STATUSES, available_at__lte=Now()).unblocked()

    def claimable_plain(self) -> Self:
        """Claimable and due, without an ordering key or a coalesce key: no other job decides its claim."""
        return self.filter(
            status__in=Job.CLAIMABLE_STATUSES, available_at__lte=Now(), ordering_key=None, coalesce_key=None
        )

    def postpone(self, attempt: int, until: datetime) -> int:
        """Running → back where the claim took it from, due at ``until``, the attempt given back (rate limit).

        A first attempt goes back to pending, a retry to failed; the relay
        publishes either when due.
        """
        return self.held(attempt).update(
            status=Job.Status.PENDING if attempt == 1 else Job.Status.FAILED,
            attempts=attempt - 1,
            available_at=until,
            lease_expires_at=None,
            started_at=None if attempt == 1 else F("started_at"),
        )

    def held(self, attempt: int) -> Self:
        """Running at attempt ``attempt``: the only rows an attempt's outcome may move (compare-and-set)."""
        return self.filter(status=Job.Status.RUNNING, attempts=attempt)

    def succeed(self, attempt: int, return_value: Any = None) -> int:
        """Running → succeeded; a Django task's ``return_value`` (JSON) is stored, a side effect's is not.

        ``critical_path.store.compiled.succeed`` runs this same UPDATE, without a return
        value, for one job without compiling it each time.
        """
        values = success_values()
        if return_value is not None:
            values["return_value"] = return_value
        return self.held(attempt).update(**values)

    def run_by(self, attempt: int, worker_id: str) -> int:
        """Record which worker runs attempt ``attempt`` (Django tasks, whose results list their workers)."""
        return self.held(attempt).update(worker_id=worker_id)

    def fail(self, attempt: int, backoff: timedelta, error: str, history: list[dict[str, Any]]) -> int:
        return self.held(attempt).update(
            status=Job.Status.FAILED,
            available_at=now_plus(backoff),
            lease_expires_at=None,
            last_error=error,
            error_history=history,
        )

    def dead_letter(self, attempt: int, error: str, history: list[dict[str, Any]]) -> int:
        return self.held(attempt).update(
            status=Job.Status.DEAD,
            finished_at=Now(),
            lease_expires_at=None,
            last_error=error,
            error_history=history,
        )

    def replay(self) -> int:
        """Dead or failed → pending, due now, attempts reset; the error history is kept."""
        return self.replayable().update(
            status=Job.Status.PENDING,
            available_at=Now(),
            attempts=0,
            republished=0,
            enqueued_at=None,
            finished_at=None,
            lease_expires_at=None,
        )

    def discard(self) -> int:
        return self.discardable().update(status=Job.Status.DISCARDED, finished_at=Now(), lease_expires_at=None)


def success_values() -> dict[str, Any]:
    """What the success sets: succeeded, finished now, the lease over."""
    return {"status": Job.Status.SUCCEEDED, "finished_at": Now(), "lease_expires_at": None}


def hand_off_values() -> dict[str, Any]:
    """What the hand-off sets: enqueued, now."""
    return {"status": Job.Status.ENQUEUED, "enqueued_at": Now()}


def claim_values(lease: timedelta, *, plain: bool = False) -> dict[str, Any]:
    """What the claim sets: running with the attempt counted and a lease, or coalesced (see ``_coalesced``).

    ``plain``: for jobs without a coalesce key (``claimable_plain``), which always run.
    """
    pick = _running if plain else _coalesced
    return {
        "status": pick(Value(Job.Status.COALESCED), Value(Job.Status.RUNNING)),
        "attempts": F("attempts") + pick(Value(0), Value(1)),
        "lease_expires_at": pick(F("lease_expires_at"), now_plus(lease)),
        "started_at": pick(F("started_at"), Now()),
        "finished_at": pick(Now(), F("finished_at")),
    }


def _running(then: Any, otherwise: Any) -> Any:
    """What ``_coalesced`` picks for a job without a coalesce key: ``otherwise``, always."""
    return otherwise


def _coalesced(then: Any, otherwise: Any) -> Case:
    """``then`` for a job being claimed that a newer equal job absorbs, ``otherwise`` for one that runs.

    A newer job (higher id) of the same side effect and coalesce key absorbs
    the claimed one if it has not started: pending or enqueued, and due. It
    runs later than this claim, so after the claimed job's transaction
    committed, with the newest arguments: nothing the claimed job would have
    done is missed. A newer job that is running, finished or failed may have
    started before the claimed job's transaction committed (ids are taken at
    insert, not at commit), so it absorbs nothing. Jobs without a key stop at
    the first ``When`` and never read the subquery.
    """
    newer = Job.objects.filter(
        effect=OuterRef("effect"),
        coalesce_key=OuterRef("coalesce_key"),
        pk__gt=OuterRef("pk"),
        status__in=Job.COALESCING_STATUSES,
        available_at__lte=Now(),
    )
    return Case(When(coalesce_key__isnull=True, then=otherwise), When(Exists(newer), then=then), default=otherwise)


def _waits() -> Q:
    """True of a keyed job that must wait: a job of its key before it is unfinished, or one after it runs.

    Two subqueries, each a bounded probe however many jobs wait in the key's
    line: the ordering index (key, id) up to this job, and the few running jobs.
    """
    key = Job.objects.filter(ordering_key=OuterRef("ordering_key"))
    ahead = key.filter(status__in=Job.ORDERED_STATUSES, pk__lt=OuterRef("pk"))
    running = key.filter(status=Job.Status.RUNNING, pk__gt=OuterRef("pk"))
    return Q(Exists(ahead)) | Q(Exists(running))


class Job(models.Model):
    """One emitted side effect: what to run, with what, and how far it got."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        ENQUEUED = "enqueued", _("enqueued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        DEAD = "dead", _("dead")
        DISCARDED = "discarded", _("discarded")
        COALESCED = "coalesced", _("coalesced")

    LIVE_STATUSES = (Status.PENDING, Status.ENQUEUED, Status.RUNNING, Status.FAILED)
    CLAIMABLE_STATUSES = (Status.PENDING, Status.ENQUEUED, Status.FAILED)
    REPLAYABLE_STATUSES = (Status.DEAD, Status.FAILED)
    DISCARDABLE_STATUSES = (Status.PENDING, Status.ENQUEUED, Status.FAILED, Status.DEAD)
    #: Statuses of a newer job that absorbs older equal ones when they are claimed: not started yet.
    COALESCING_STATUSES = (Status.PENDING, Status.ENQUEUED)
    #: A job of an ordering key in one of these keeps the jobs after it waiting: a dead one until replayed or discarded.
    ORDERED_STATUSES = (*LIVE_STATUSES, Status.DEAD)

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
        """The key a side effect gives the outside world: its own, or one stable per database and id."""
        return self.idempotency_key or f"{self._state.db}:{self.pk}"

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

    The one definition behind the worker's histogram, the dashboard and the benchmarks.
    """
    ready = max(available_at, enqueued_at) if enqueued_at is not None else available_at
    return max(timedelta(0), started_at - ready)


def error_line(text: str) -> str:
    """The line of a traceback that names the error: its last non-empty line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


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
