"""How jobs are chosen and moved: ``JobQuerySet``'s adjectives and transition verbs, and the statuses they test.

Adjectives narrow a queryset; verbs are one conditional UPDATE each,
returning how many rows moved. ``critical_path.store.compiled`` runs some of
the same UPDATEs compiled once, from the ``*_values()`` below. ``models.py``
builds ``Job.objects`` from this module, so the statuses are defined here
(``Job.Status`` is ``JobStatus``) and the subqueries over other jobs find the
model through the app registry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from django.apps import apps
from django.db import models
from django.db.models import Case, Exists, ExpressionWrapper, F, OuterRef, Q, Value, When
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    # The package's one import circle, of two modules and for types only: models builds Job.objects from this
    # queryset, which is typed over Job (named as a string in JobQuerySet's base).
    from critical_path.models import Job  # noqa: F401


class JobStatus(models.TextChoices):
    """Where a job is in its life (``Job.Status``); the state table in the docs says what moves it."""

    PENDING = "pending", _("pending")
    ENQUEUED = "enqueued", _("enqueued")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    DEAD = "dead", _("dead")
    DISCARDED = "discarded", _("discarded")
    COALESCED = "coalesced", _("coalesced")


#: Not in a final state: a job that may still run.
LIVE_STATUSES = (JobStatus.PENDING, JobStatus.ENQUEUED, JobStatus.RUNNING, JobStatus.FAILED)
#: A worker may claim a job in one of these, once it is due.
CLAIMABLE_STATUSES = (JobStatus.PENDING, JobStatus.ENQUEUED, JobStatus.FAILED)
#: Replay (admin, command) moves these back to pending.
REPLAYABLE_STATUSES = (JobStatus.DEAD, JobStatus.FAILED)
#: Discard (admin, command) moves these to discarded.
DISCARDABLE_STATUSES = (JobStatus.PENDING, JobStatus.ENQUEUED, JobStatus.FAILED, JobStatus.DEAD)
#: Statuses of a newer job that absorbs older equal ones when they are claimed: not started yet.
COALESCING_STATUSES = (JobStatus.PENDING, JobStatus.ENQUEUED)
#: A job of an ordering key in one of these keeps the jobs after it waiting: a dead one until replayed or discarded.
ORDERED_STATUSES = (*LIVE_STATUSES, JobStatus.DEAD)
#: The live and dead statuses grouped as their partial indexes cover them (``Job.Meta.indexes``).
INDEXED_UNFINISHED = (
    (JobStatus.PENDING, JobStatus.FAILED),
    (JobStatus.ENQUEUED,),
    (JobStatus.RUNNING,),
    (JobStatus.DEAD,),
)


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
        return self.filter(status__in=LIVE_STATUSES)

    def dead(self) -> Self:
        return self.filter(status=JobStatus.DEAD)

    def failed(self) -> Self:
        return self.filter(status=JobStatus.FAILED)

    def due(self) -> Self:
        """Pending or failed jobs whose time has come."""
        return self.filter(status__in=[JobStatus.PENDING, JobStatus.FAILED], available_at__lte=Now())

    def pending_due(self) -> Self:
        """Pending jobs whose time has come: the ones a hand-off moves, and the backlog nobody has published yet."""
        return self.filter(status=JobStatus.PENDING, available_at__lte=Now())

    def lease_expired(self) -> Self:
        """Running jobs whose worker is gone: their lease (hard time limit plus grace) is over."""
        return self.filter(status=JobStatus.RUNNING, lease_expires_at__lt=Now())

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
        return self.filter(waits, status=JobStatus.ENQUEUED)

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
        return self.filter(status__in=REPLAYABLE_STATUSES)

    def discardable(self) -> Self:
        return self.filter(status__in=DISCARDABLE_STATUSES)

    def ended_since(self, delta: timedelta) -> Self:
        """Jobs whose last run ended within ``delta``: succeeded or dead-lettered since then.

        One arm per status, so each reads its own partial index on ``finished_at``
        (an ``IN`` across the two would read neither).
        """
        since = now_plus(-delta)
        return self.filter(
            Q(status=JobStatus.SUCCEEDED, finished_at__gte=since) | Q(status=JobStatus.DEAD, finished_at__gte=since)
        )

    def unfinished_arms(self) -> list[Self]:
        """Live and dead jobs as one queryset per partial index, to count each and combine with ``UNION ALL``.

        One ``status IN (...)`` across them reads none of the partial indexes: on a
        table of finished rows it scans them all.
        """
        return [self.filter(status__in=group) for group in INDEXED_UNFINISHED]

    # Verbs: one conditional UPDATE each, returning how many rows moved.

    def hand_off(self) -> int:
        """Pending → enqueued, once the message is published (dispatcher, relay).

        Only from pending: a worker may have claimed, run and failed the job
        before the dispatcher's UPDATE, and a failed job must stay failed until
        its backoff has passed. Only a due one, too: a worker may have claimed
        the job and postponed it (rate limit) before this UPDATE, its message
        consumed; marked enqueued, it would wait for the lost-message republish
        instead of the relay's pass once it is due. ``critical_path.store.compiled``
        compiles the same UPDATE.
        """
        return self.pending_due().update(**hand_off_values())

    def retry(self) -> int:
        """Failed → enqueued, once its retry is published (relay, holding the row since it read it)."""
        return self.filter(status=JobStatus.FAILED).update(status=JobStatus.ENQUEUED, enqueued_at=Now())

    def republish(self) -> int:
        """Enqueued → enqueued, counted, once a message taken for lost is published again (relay)."""
        return self.filter(status=JobStatus.ENQUEUED).update(enqueued_at=Now(), republished=F("republished") + 1)

    def wait(self) -> int:
        """Enqueued → pending, for a keyed job whose claim found it blocked: its message is gone.

        The job is published again when its turn comes, by whoever finishes the
        job before it (see ``dispatcher.hand_off_next``) or else by the relay,
        which leaves blocked jobs alone: no message goes round in circles.
        """
        return self.filter(status=JobStatus.ENQUEUED).blocked().update(status=JobStatus.PENDING, enqueued_at=None)

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
        return self.filter(status__in=CLAIMABLE_STATUSES, available_at__lte=Now()).unblocked()

    def claimable_plain(self) -> Self:
        """Claimable and due, without an ordering key or a coalesce key: no other job decides its claim."""
        return self.filter(status__in=CLAIMABLE_STATUSES, available_at__lte=Now(), ordering_key=None, coalesce_key=None)

    def postpone(self, claim: int, attempt: int, until: datetime) -> int:
        """Running → back where the claim took it from, due at ``until``, the attempt given back (rate limit).

        A first attempt goes back to pending, a retry to failed; the relay
        publishes either when due. The claim stays counted.
        """
        return self.held(claim).update(
            status=JobStatus.PENDING if attempt == 1 else JobStatus.FAILED,
            attempts=attempt - 1,
            available_at=until,
            lease_expires_at=None,
            started_at=None if attempt == 1 else F("started_at"),
        )

    def held(self, claim: int) -> Self:
        """Running under claim ``claim`` (``Job.claims`` as the claim left it): the only rows its outcome may move.

        The compare-and-set of every outcome. It tests the claims counter, not
        the attempt number: a replay resets ``attempts`` and a rate limit gives
        one back, so a worker that overran its lease could otherwise match the
        newer claim's attempt and record its outcome over that one's.
        """
        return self.filter(status=JobStatus.RUNNING, claims=claim)

    def succeed(self, claim: int, return_value: Any = None) -> int:
        """Running → succeeded; a Django task's ``return_value`` (JSON) is stored, a side effect's is not.

        ``critical_path.store.compiled.succeed`` runs this same UPDATE, without a return
        value, for one job without compiling it each time.
        """
        values = success_values()
        if return_value is not None:
            values["return_value"] = return_value
        return self.held(claim).update(**values)

    def run_by(self, claim: int, worker_id: str) -> int:
        """Record which worker runs the job under claim ``claim`` (Django tasks, whose results list their workers)."""
        return self.held(claim).update(worker_id=worker_id)

    def fail(self, claim: int, backoff: timedelta, error: str, history: list[dict[str, Any]]) -> int:
        return self.held(claim).update(
            status=JobStatus.FAILED,
            available_at=now_plus(backoff),
            lease_expires_at=None,
            last_error=error,
            error_history=history,
        )

    def dead_letter(self, claim: int, error: str, history: list[dict[str, Any]]) -> int:
        return self.held(claim).update(
            status=JobStatus.DEAD,
            finished_at=Now(),
            lease_expires_at=None,
            last_error=error,
            error_history=history,
        )

    def replay(self) -> int:
        """Dead or failed → pending, due now, attempts reset; the error history and the claims count are kept."""
        return self.replayable().update(
            status=JobStatus.PENDING,
            available_at=Now(),
            attempts=0,
            republished=0,
            enqueued_at=None,
            finished_at=None,
            lease_expires_at=None,
        )

    def discard(self) -> int:
        return self.discardable().update(status=JobStatus.DISCARDED, finished_at=Now(), lease_expires_at=None)


def success_values() -> dict[str, Any]:
    """What the success sets: succeeded, finished now, the lease over."""
    return {"status": JobStatus.SUCCEEDED, "finished_at": Now(), "lease_expires_at": None}


def hand_off_values() -> dict[str, Any]:
    """What the hand-off sets: enqueued, now."""
    return {"status": JobStatus.ENQUEUED, "enqueued_at": Now()}


def claim_values(lease: timedelta, *, plain: bool = False) -> dict[str, Any]:
    """What the claim sets: running with the attempt counted and a lease, or coalesced (see ``_coalesced``).

    ``plain``: for jobs without a coalesce key (``claimable_plain``), which always run.
    """
    pick = _running if plain else _coalesced
    return {
        "status": pick(Value(JobStatus.COALESCED), Value(JobStatus.RUNNING)),
        "attempts": F("attempts") + pick(Value(0), Value(1)),
        "claims": F("claims") + 1,
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
    newer = _jobs().filter(
        effect=OuterRef("effect"),
        coalesce_key=OuterRef("coalesce_key"),
        pk__gt=OuterRef("pk"),
        status__in=COALESCING_STATUSES,
        available_at__lte=Now(),
    )
    return Case(When(coalesce_key__isnull=True, then=otherwise), When(Exists(newer), then=then), default=otherwise)


def _waits() -> Q:
    """True of a keyed job that must wait: a job of its key before it is unfinished, or one after it runs.

    Two subqueries, each a bounded probe however many jobs wait in the key's
    line: the ordering index (key, id) up to this job, and the few running jobs.
    """
    key = _jobs().filter(ordering_key=OuterRef("ordering_key"))
    ahead = key.filter(status__in=ORDERED_STATUSES, pk__lt=OuterRef("pk"))
    running = key.filter(status=JobStatus.RUNNING, pk__gt=OuterRef("pk"))
    return Q(Exists(ahead)) | Q(Exists(running))


def _jobs() -> models.QuerySet[Any]:
    """Every job, for the subqueries that look at a job's neighbours (its key's line, newer equal jobs).

    Found through the app registry, as Django resolves ``"critical_path.Job"``:
    ``models.py`` imports this module to build ``Job.objects``.
    """
    return apps.get_model("critical_path", "Job")._default_manager.all()
