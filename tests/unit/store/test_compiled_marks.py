"""The compiled hand-off: the same UPDATE as ``JobQuerySet.hand_off``, for any number of ids."""

from datetime import timedelta

import pytest
from django.utils import timezone

from critical_path.models import Job
from critical_path.store import compiled as marks
from tests.factories import make_job

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.mark.parametrize("using", ["default", "other"])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9])
def test_the_compiled_hand_off_marks_every_id_of_a_batch_of_any_size(using, count):
    jobs = [make_job(using=using) for _ in range(count)]
    untouched = make_job(using=using)
    assert marks.hand_off([job.pk for job in jobs], using=using) == count
    statuses = dict(Job.objects.using(using).values_list("pk", "status"))
    assert [statuses[job.pk] for job in jobs] == [Job.Status.ENQUEUED] * count
    assert statuses[untouched.pk] == Job.Status.PENDING
    assert Job.objects.using(using).filter(enqueued_at__isnull=False).count() == count


def test_the_compiled_hand_off_moves_only_due_pending_jobs_like_the_orm_one():
    later = timezone.now() + timedelta(hours=1)
    jobs = [
        make_job(),
        make_job(Job.Status.FAILED, attempts=1),  # claimed and failed before the mark: stays failed
        make_job(Job.Status.RUNNING, attempts=1),
        make_job(available_at=later),  # postponed by its rate limit before the mark: left to the relay
    ]
    assert marks.hand_off([job.pk for job in jobs], using="default") == 1
    assert list(Job.objects.order_by("pk").values_list("status", flat=True)) == [
        Job.Status.ENQUEUED,
        Job.Status.FAILED,
        Job.Status.RUNNING,
        Job.Status.PENDING,
    ]


def test_no_ids_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert marks.hand_off([], using="default") == 0
