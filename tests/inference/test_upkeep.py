"""Partition upkeep: scheduled, fanned out per tenant, idempotent; commands report."""

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_tenants.utils import schema_context

from apps.core.tasks import run_in_tenant
from apps.groups.services import group_create, group_set_status, members_set
from apps.inference import tables
from apps.inference.tasks import maintain_partitions_all_tenants
from apps.providers.services import provider_create
from apps.registry.services import model_import


def _active_group(slug: str):
    provider = provider_create(
        actor="t",
        name=f"p-{slug}",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="sk-x-12345678",
    )
    version = model_import(provider=provider, external_id="m", actor="t").version_id
    group = group_create(name=slug, slug=slug, actor="t")
    members_set(
        group=group,
        actor="t",
        members=[{"version_id": version, "role": "champion", "weight": 100}],
    )
    return group_set_status(group=group, status="active", actor="t")


def test_schedule_exists_and_fans_out_one_task_per_tenant(tenant_a, tenant_b):
    assert (
        Schedule.objects.filter(
            func="apps.inference.tasks.maintain_partitions_all_tenants"
        ).count()
        == 1
    )

    count = maintain_partitions_all_tenants()

    queued = [q.task["args"][0] for q in OrmQ.objects.all()]
    assert count == len(queued) and {"alpha", "beta"} <= set(queued)
    assert "public" not in queued


def test_tenant_task_creates_tomorrows_partitions_and_is_idempotent(tenant_a):
    with schema_context("alpha"):
        group = _active_group("upkeep")
        last = tables.partitions(group.pk)[-1]
        tables.drop_partition(group.pk, last)  # as if a day had passed
    created = run_in_tenant("alpha", "apps.inference.tasks.maintain_partitions")
    again = run_in_tenant("alpha", "apps.inference.tasks.maintain_partitions")

    assert created == [last] and again == []


def test_status_command_reports_default_partition_rows(tenant_a, capsys):
    from apps.core.context import new_request_id
    from apps.inference.writer import log_write

    with schema_context("alpha"):
        group = _active_group("reported")
        log_write(
            group.pk,
            {
                "request_id": new_request_id(),
                "status": "ok",
                "ts": timezone.now() + timedelta(days=40),
            },
        )
    call_command("inference_tables_status")
    captured = capsys.readouterr()

    line = next(x for x in captured.out.splitlines() if "\treported\t" in x)
    assert line.split("\t")[6] == "1"
    assert "default partition" in captured.err
    call_command("provision_inference_tables")
    assert f"alpha\treported\tinference_log_g{group.pk}" in capsys.readouterr().out
