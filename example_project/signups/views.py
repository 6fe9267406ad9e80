"""The signup page and ``POST /api/signups/``, each in two modes: ``?mode=inline`` and the critical path."""

import json
import logging

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from example_project.signups.effects import recompute_stats, send_welcome_email, sync_to_crm
from example_project.signups.forms import SignupForm
from example_project.signups.models import Account, DailyStats

logger = logging.getLogger(__name__)

INLINE = "inline"
CRITICAL_PATH = "critical-path"


def sign_up(form: SignupForm) -> Account:
    """The critical path: write the account; its side effects run after the commit, in a Celery worker."""
    with transaction.atomic():
        account = form.save()
        send_welcome_email.after_commit(account.pk)
        # The account's CRM updates run one at a time, in the order they were made.
        sync_to_crm.using(ordering_key=f"account:{account.pk}").after_commit(account.pk)
        recompute_stats.after_commit(account.created_at.date().isoformat())
    return account


def sign_up_inline(form: SignupForm) -> tuple[Account, list[str]]:
    """The picture before: the request waits for every side effect, and loses those that fail.

    Returns the account and the names of the side effects that failed (logged, never retried).
    """
    account = form.save()
    lost = []
    for effect, args in [
        (send_welcome_email, [account.pk]),
        (sync_to_crm, [account.pk]),
        (recompute_stats, [account.created_at.date().isoformat()]),
    ]:
        try:
            effect(*args)
        except Exception:
            logger.exception("side effect %s failed for account %s", effect.__name__, account.pk)
            lost.append(effect.__name__)
    return account, lost


def mode_of(request: HttpRequest) -> str:
    return INLINE if request.GET.get("mode") == INLINE else CRITICAL_PATH


def signup(request: HttpRequest) -> HttpResponse:
    mode = mode_of(request)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if mode == INLINE:
            sign_up_inline(form)
        else:
            sign_up(form)
        return redirect(request.get_full_path())
    context = {
        "form": form,
        "mode": mode,
        "accounts": Account.objects.order_by("-pk")[:10],
        "stats": DailyStats.objects.order_by("-day")[:7],
    }
    return render(request, "signups/signup.html", context)


@csrf_exempt
@require_POST
def api_signup(request: HttpRequest) -> JsonResponse:
    """``{"email": ..., "plan": "free" | "pro"}`` → 201 ``{"id", "mode", "lost"}``, or 400 with the errors."""
    try:
        data = json.loads(request.body)
    except ValueError:
        return JsonResponse({"errors": {"__all__": ["The body is not JSON."]}}, status=400)
    form = SignupForm(data if isinstance(data, dict) else {})
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    mode = mode_of(request)
    lost: list[str] = []
    if mode == INLINE:
        account, lost = sign_up_inline(form)
    else:
        account = sign_up(form)
    return JsonResponse({"id": account.pk, "mode": mode, "lost": lost}, status=201)
