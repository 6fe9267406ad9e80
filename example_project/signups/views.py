from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from example_project.signups.effects import send_welcome_email
from example_project.signups.forms import SignupForm
from example_project.signups.models import Account


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            account = form.save()
            send_welcome_email.after_commit(account.pk)
        return redirect("signup")
    accounts = Account.objects.select_related("welcomeemail").order_by("-pk")[:20]
    return render(request, "signups/signup.html", {"form": form, "accounts": accounts})
