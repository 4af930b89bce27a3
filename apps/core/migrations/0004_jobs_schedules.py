from django.db import migrations

SCHEDULES = [
    {
        "name": "jobs: reap expired leases",
        "func": "apps.jobs.tasks.jobs_reap_all_tenants",
        "schedule_type": "I",
        "minutes": 1,
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
    """Every minute, per tenant: jobs whose worker died are requeued or failed."""

    dependencies = [("core", "0003_analytics_schedules")]

    operations = [migrations.RunPython(create, remove)]
