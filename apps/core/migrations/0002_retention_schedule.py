from datetime import UTC, datetime, time, timedelta

from django.db import migrations

SCHEDULES = [
    {
        "name": "inference: retention and archival",
        "func": "apps.inference.retention_tasks.apply_retention_all_tenants",
        "schedule_type": "D",  # daily; a missed day is caught up by the next run
    },
]
# Runs at a quiet hour (UTC); the schedule keeps that time of day.
RUN_AT = time(3, 30)


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    now = datetime.now(UTC)
    next_run = datetime.combine(now.date(), RUN_AT, tzinfo=UTC)
    if next_run <= now:
        next_run += timedelta(days=1)
    for spec in SCHEDULES:
        Schedule.objects.update_or_create(
            name=spec["name"], defaults={**spec, "next_run": next_run}
        )


def remove(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s["name"] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    """Platform schedule (public schema): fans out to one retention task per tenant."""

    dependencies = [("core", "0001_schedules")]

    operations = [migrations.RunPython(create, remove)]
