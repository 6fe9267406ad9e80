"""The admin for people on call: jobs (read-only), failed jobs, dead letters, replay and discard, the dashboard.

Actions call ``transitions.replay`` and ``transitions.discard``: the same batched,
compare-and-set transitions as the commands, so a double submit or two
operators at once move each job once. Each batch is written to the admin's
``LogEntry`` history inside the batch's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IS_POPUP_VAR
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, ngettext_lazy

from critical_path.conf import settings
from critical_path.models import Dashboard, DeadLetter, FailedJob, Job, JobQuerySet, RelayHeartbeat
from critical_path.operations import dashboard, payloads, selection
from critical_path.outbox import transitions
from critical_path.publishing import publisher

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise

    ModelAdmin = admin.ModelAdmin[Any]
else:
    ModelAdmin = admin.ModelAdmin


def _timestamp(model: Any, name: str) -> Callable[[Any, Any], str | None]:
    """A column or field showing ``name`` to the second (the admin's own format stops at minutes)."""

    @admin.display(description=model._meta.get_field(name).verbose_name, ordering=name)
    def show(self: Any, obj: Any) -> str | None:
        value = getattr(obj, name)
        return None if value is None else formats.date_format(timezone.localtime(value), "Y-m-d H:i:s")

    return show


class ReadOnlyAdmin(ModelAdmin):
    """Rows change only through the outbox's transitions (actions), never through a form."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EffectFilter(admin.SimpleListFilter):
    """Side effects declared in this process, and those of the page's live and dead jobs (``known_effects``)."""

    title = _("side effect")
    parameter_name = "effect"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(path, path) for path in sorted(selection.known_effects(model_admin.get_queryset(request)))]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(effect=self.value()) if self.value() else queryset


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    """Every job, read-only: no add, no edit, no delete (discard instead, which keeps the row)."""

    list_display = ["id", "effect", "status", "attempts_display", "queue", "created", "finished"]
    list_filter = [
        "status",
        EffectFilter,
        ("queue", admin.AllValuesFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
        ("finished_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=idempotency_key", "=correlation_id", "=ordering_key", "effect", "last_error"]
    search_help_text = _("Id, UUID, idempotency key, correlation id, ordering key, side effect or error text.")
    ordering = ["-id"]
    show_full_result_count = False
    actions = ["replay", "discard"]
    change_form_template = "admin/critical_path/job/change_form.html"
    change_list_template = "admin/critical_path/job/change_list.html"
    fieldsets = [
        (None, {"fields": ["effect", "version", "status", "attempts_display", "queue", "priority", "republished"]}),
        (_("Identity"), {"fields": ["uuid", "key", "correlation_id", "trace_context", "task_result"]}),
        (_("Ordering"), {"fields": ["ordering_key", "waiting_for"]}),
        (_("Django task"), {"fields": ["worker_id", "returned"], "classes": ["collapse"]}),
        (_("Times"), {"fields": ["created", "available", "enqueued", "started", "finished", "lease_expires"]}),
    ]
    created, available, enqueued, started, finished, lease_expires = (
        _timestamp(Job, f"{name}_at")
        for name in ("created", "available", "enqueued", "started", "finished", "lease_expires")
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """The sections that apply to the job: no Django task's for a side effect, no ordering for an unordered job."""
        if obj is None:
            return self.fieldsets
        hidden = set()
        if not obj.worker_id and obj.return_value is None:
            hidden.add(str(_("Django task")))
        if obj.ordering_key is None:
            hidden.add(str(_("Ordering")))
        shown = [(name, options) for name, options in self.fieldsets if str(name) not in hidden]
        if not _results_stored():
            shown = [
                (name, {**options, "fields": [field for field in options["fields"] if field != "task_result"]})
                for name, options in shown
            ]
        return shown

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("critical_path.replay_job")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("critical_path.discard_job")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(field) for _name, options in self.fieldsets for field in options["fields"]]

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> tuple[Any, bool]:
        term = search_term.strip().lstrip("#")
        # An id: ASCII digits that fit a bigint (str.isdigit() accepts "²", and int() refuses 4,300 digits).
        if term.isascii() and term.isdigit() and len(term) <= 18:
            return queryset.filter(Q(pk=int(term)) | Q(idempotency_key=term) | Q(correlation_id=term)), False
        try:
            key = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(uuid=key) | Q(idempotency_key=term) | Q(correlation_id=term)), False

    @admin.display(description=_("idempotency key"))
    def key(self, job: Job) -> str:
        """The key the side effect hands the outside world: the emit's, or else the job's UUID."""
        if job.idempotency_key is None:
            return _("%(uuid)s (the UUID: emitted without a key)") % {"uuid": job.uuid}
        return job.idempotency_key

    @admin.display(description=_("attempts"))
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description=_("last error"))
    def error_line(self, job: Job) -> str:
        return job.error_line

    @admin.display(description=_("waiting for"))
    def waiting_for(self, job: Job) -> str:
        """The job ahead in the ordering key's line that keeps this one waiting; a dead one does until handled."""
        ahead = job.blocker()
        if ahead is None:
            return "—"
        from django.utils.html import format_html

        url = reverse("admin:critical_path_job_change", args=[ahead.pk], current_app=self.admin_site.name)
        note: object
        if ahead.status == Job.Status.DEAD:
            note = _("dead: it holds up this job and the rest of its key until it is replayed or discarded")
        elif ahead.status == Job.Status.FAILED:
            note = _("failed, retrying: this job runs once it succeeds or is discarded")
        else:
            note = ahead.get_status_display()
        return format_html('<a href="{}">#{}</a> {} ({})', url, ahead.pk, ahead.effect, note)

    @admin.display(description=_("return value"))
    def returned(self, job: Job) -> str:
        """A Django task's return value, values under secret-looking keys masked (``critical_path.backends``)."""
        return "—" if job.return_value is None else payloads.pretty(job.return_value)

    @admin.display(description=_("task result"))
    def task_result(self, job: Job) -> str:
        """A link to django-celery-results' records of this job's deliveries, when results are stored."""
        if not _results_stored():
            return "—"
        try:
            url = reverse("admin:django_celery_results_taskresult_changelist")
        except NoReverseMatch:
            return "—"
        from django.utils.html import format_html

        query = urlencode({"q": publisher.argsrepr(job.pk, job.database)})
        return format_html('<a href="{}?{}">{}</a>', url, query, _("deliveries of this job"))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        job = context.get("original")
        if job is not None:
            raw = request.user.has_perm("critical_path.view_job_payload")
            context["payload"] = payloads.pretty({"args": job.args, "kwargs": job.kwargs}, mask=not raw)
            context["payload_masked"] = not raw
            context["error_history"] = job.error_history
        return super().render_change_form(request, context, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}), "dashboard_url": _dashboard_url(request)}
        return super().changelist_view(request, extra_context)

    @admin.action(permissions=["replay"], description=_("Replay selected jobs (dead or failed → pending)"))
    def replay(self, request: HttpRequest, queryset: JobQuerySet) -> HttpResponse | None:
        return self._move(
            request,
            queryset,
            legal=queryset.replayable(),
            action="replay",
            operation=transitions.replay,
            logged=_("Replayed: back to pending, attempts reset."),
            done=ngettext_lazy("%(count)d job replayed.", "%(count)d jobs replayed.", "count"),
        )

    @admin.action(permissions=["discard"], description=_("Discard selected jobs"))
    def discard(self, request: HttpRequest, queryset: JobQuerySet) -> HttpResponse | None:
        return self._move(
            request,
            queryset,
            legal=queryset.discardable(),
            action="discard",
            operation=transitions.discard,
            logged=_("Discarded."),
            done=ngettext_lazy("%(count)d job discarded.", "%(count)d jobs discarded.", "count"),
        )

    def _move(
        self,
        request: HttpRequest,
        queryset: JobQuerySet,
        *,
        legal: JobQuerySet,
        action: str,
        operation: Callable[..., int],
        logged: StrOrPromise,
        done: StrOrPromise,
    ) -> HttpResponse | None:
        """Move the ``legal`` jobs of the selected ``queryset`` with ``operation``, in batches.

        Past ``CRITICAL_PATH_ADMIN_ACTION_LIMIT`` jobs, ``action`` asks for
        confirmation first. Each batch is logged as ``logged`` in the admin's
        history; ``done`` (plural on ``count``) says how many moved, and a
        warning how many of the selection were skipped.
        """
        selected = _selected(request, queryset)
        jobs = legal.order_by("pk")
        count = jobs.count()
        if count > settings.ADMIN_ACTION_LIMIT and request.POST.get("confirm") != str(count):
            return self._confirm(request, action, count)
        user_id = request.user.pk
        assert user_id is not None  # the admin only serves authenticated staff

        def audit(database: str, ids: list[int]) -> None:
            LogEntry.objects.log_actions(
                user_id, Job.objects.using(database).filter(pk__in=ids), CHANGE, change_message=str(logged)
            )

        moved = operation(jobs, using=jobs.db, on_batch=audit)
        self.message_user(request, done % {"count": moved}, messages.SUCCESS)
        skipped = selected - moved
        if skipped > 0:
            self.message_user(
                request,
                ngettext(
                    "%(count)d selected job was skipped: its status does not allow it, or someone changed it first.",
                    "%(count)d selected jobs were skipped: their status does not allow it, or someone changed "
                    "them first.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
        return None

    def _confirm(self, request: HttpRequest, name: str, count: int) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "opts": self.model._meta,
            "action_name": name,
            "count": count,
            "limit": settings.ADMIN_ACTION_LIMIT,
            "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "is_popup": IS_POPUP_VAR in request.GET,
        }
        return TemplateResponse(request, "admin/critical_path/job/confirm_action.html", context)


class StatusAdmin(JobAdmin):
    """Jobs of one status, newest first, with the columns that matter for it."""

    status: str
    list_filter = [
        EffectFilter,
        ("queue", admin.AllValuesFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).filter(status=self.status)


@admin.register(FailedJob)
class FailedJobAdmin(StatusAdmin):
    status = Job.Status.FAILED
    list_display = ["id", "effect", "attempts_display", "started", "available", "error_line"]
    ordering = ["-started_at", "-id"]


@admin.register(DeadLetter)
class DeadLetterAdmin(StatusAdmin):
    status = Job.Status.DEAD
    list_display = ["id", "effect", "attempts_display", "finished", "error_line"]
    list_filter = [*StatusAdmin.list_filter, ("finished_at", admin.DateFieldListFilter)]
    ordering = ["-finished_at", "-id"]


@admin.register(Dashboard)
class DashboardAdmin(ReadOnlyAdmin):
    """The health page: its changelist is the dashboard, guarded by ``critical_path.view_dashboard``."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, **dashboard.context(request)}
        return TemplateResponse(request, "admin/critical_path/dashboard.html", context)

    def get_urls(self) -> list[URLPattern]:
        """The dashboard page only: as a proxy of ``Job``, the change, history and delete pages would show any
        job's record, payload included, to whoever may see the dashboard."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]


@admin.register(RelayHeartbeat)
class RelayHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_pass", "passes", "published", "republished", "rescued", "errors", "last_failure"]
    ordering = ["-last_run_at"]
    last_pass, last_failure = _timestamp(RelayHeartbeat, "last_run_at"), _timestamp(RelayHeartbeat, "last_error_at")


def _results_stored() -> bool:
    """Whether deliveries are stored by django-celery-results, whose records the job's page links."""
    return bool(settings.STORE_RESULTS and apps.is_installed("django_celery_results"))


def _selected(request: HttpRequest, queryset: JobQuerySet) -> int:
    """How many jobs the operator selected, counted before the list's narrowing to its status.

    A status list (failed jobs, dead letters) narrows the selection to its own
    status, so a job that moved since the page was shown (the first of a double
    submit replayed it) would not count as selected, nor as skipped.
    """
    if request.POST.get("select_across", "0") == "0":
        return len(set(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)))
    return queryset.count()


def _dashboard_url(request: HttpRequest) -> str | None:
    if not request.user.has_perm("critical_path.view_dashboard"):
        return None
    return reverse("admin:critical_path_dashboard_changelist")
