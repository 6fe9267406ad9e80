"""With results stored, a job's admin page links to django-celery-results' record of its delivery."""

import re
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from tests.effects import note
from tests.helpers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.slow]


def test_the_task_result_link_finds_the_jobs_delivery(worker_queue, settings):
    settings.CRITICAL_PATH_STORE_RESULTS = True
    with transaction.atomic():
        job = note.after_commit("with a result")
        note.after_commit("another")
    wait_for(lambda: TaskResult.objects.count() == 2, timeout=30, message="both results stored")
    [stored] = TaskResult.objects.filter(task_args__contains=f"({job.pk}, 'default')")
    [unrelated] = TaskResult.objects.exclude(pk=stored.pk)
    assert stored.task_name == "critical_path.deliver"
    assert stored.status == "SUCCESS" and stored.result == '"succeeded"'

    client = Client()
    client.force_login(User.objects.create_superuser("admin", password="pw"))
    page = client.get(reverse("admin:critical_path_job_change", args=[job.pk])).content.decode()
    [link] = re.findall(r'href="([^"]*taskresult/\?q=[^"]*)"', page)
    listing = client.get(unescape(link)).content.decode()
    assert stored.task_id in listing and unrelated.task_id not in listing


def test_without_stored_results_there_is_no_link(settings):
    settings.CRITICAL_PATH_STORE_RESULTS = False
    job = note.after_commit("no result")
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password="pw"))
    page = client.get(reverse("admin:critical_path_job_change", args=[job.pk])).content.decode()
    assert "taskresult/?q=" not in page
