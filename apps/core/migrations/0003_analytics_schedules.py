from django.db import migrations

SCHEDULES = [
    {
        "name": "groups: hourly rollups",
        "func": "apps.groups.analytics_tasks.rollups_refresh_all_tenants",
        "schedule_type": "I",
        "minutes": 5,
    },
    {
        "name": "groups: promotion rules and canary guardrails",
        "func": "apps.groups.analytics_tasks.promotion_auto_all_tenants",
        "schedule_type": "I",
        "minutes": 5,
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
    """Platform schedules (public schema): every 5 minutes, one task per tenant."""

    dependencies = [("core", "0002_retention_schedule")]

    operations = [migrations.RunPython(create, remove)]
