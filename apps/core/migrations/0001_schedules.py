from django.db import migrations

SCHEDULES = [
    {
        "name": "inference: partitions ahead",
        "func": "apps.inference.tasks.maintain_partitions_all_tenants",
        "schedule_type": "H",  # hourly: a missed run never leaves a day without a partition
    },
]


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for spec in SCHEDULES:
        Schedule.objects.update_or_create(name=spec["name"], defaults=spec)


def remove(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name__in=[s["name"] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    """Platform schedules (public schema): each fans out to one task per tenant."""

    dependencies = [("django_q", "0018_task_success_index")]

    operations = [migrations.RunPython(create, remove)]
