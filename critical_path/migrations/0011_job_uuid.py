"""Each job gets a UUID, its default idempotency key: added nullable, filled in batches, then required and unique.

Existing jobs get a time-ordered UUID (version 7) from their ``created_at``,
as new ones get from their emit, so the unique index stays in creation order.
"""

import os
import uuid
from typing import Any

from django.db import migrations, models

import critical_path.models

BATCH_SIZE = 1000


def _uuid7(milliseconds: int) -> uuid.UUID:
    value = milliseconds << 80 | int.from_bytes(os.urandom(10))
    return uuid.UUID(int=value & ~(0xF << 76 | 0x3 << 62) | 0x7 << 76 | 0x2 << 62)


def fill_uuids(apps: Any, schema_editor: Any) -> None:
    Job = apps.get_model("critical_path", "Job")
    jobs = Job.objects.using(schema_editor.connection.alias)
    last = 0
    while True:
        batch = list(jobs.filter(pk__gt=last, uuid__isnull=True).order_by("pk").only("pk", "created_at")[:BATCH_SIZE])
        if not batch:
            return
        for job in batch:
            job.uuid = _uuid7(int(job.created_at.timestamp() * 1000))
        jobs.bulk_update(batch, ["uuid"])
        last = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("critical_path", "0010_task_results"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="uuid",
            field=models.UUIDField(editable=False, null=True, verbose_name="UUID"),
        ),
        migrations.RunPython(fill_uuids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="job",
            name="uuid",
            field=models.UUIDField(
                db_default=critical_path.models.RandomUUID(),
                default=critical_path.models.new_uuid,
                editable=False,
                help_text="Unique everywhere, for good: the idempotency key of a job emitted without one.",
                unique=True,
                verbose_name="UUID",
            ),
        ),
    ]
