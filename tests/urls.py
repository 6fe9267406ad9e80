from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path

from critical_path.views import health, metrics
from tests.effects import note
from tests.testapp.models import Account


def signup(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        account = Account.objects.create(email=request.POST["email"])
        job = note.after_commit(account.email)
    return JsonResponse({"account": account.pk, "job": job.pk})


urlpatterns = [
    path("signup/", signup),
    path("health/", health),
    path("metrics/", metrics),
    path("admin/", admin.site.urls),
]
