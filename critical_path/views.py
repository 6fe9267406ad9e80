"""HTTP endpoints for probes and scrapers: the outbox's health (and, with prometheus-client, its metrics)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from critical_path.observability.metrics import registry
from critical_path.operations.health import check


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """200 and ``{"status": "ready"}``, or 503 with the reasons the outbox is degraded.

    ``?broker=0`` leaves the broker out (a probe of a deployment that has its own broker check).
    """
    report = check(broker=request.GET.get("broker") != "0")
    return JsonResponse(report.as_dict(), status=200 if report.ready else 503)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """This process's Prometheus metrics (or every process's, in multiprocess mode); needs prometheus-client."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
