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


def test_upkeep_gives_an_older_table_its_partial_indexes_without_blocking_writers(
    django_db_setup, django_db_blocker
):
    """Outside a transaction, as the scheduled task runs: per-partition indexes built
    CONCURRENTLY and attached; the parent's index ends valid."""
    from django.db import connection

    group_id = 990_000 + timezone.now().microsecond % 9_999
    name = tables.table_name(group_id)
    with django_db_blocker.unblock(), schema_context("alpha"):
        tables.provision(group_id, ahead=2)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP INDEX "alpha"."{name}_fb"')
                cursor.execute(f'DROP INDEX "alpha"."{name}_pending"')
            assert tables.ensure_indexes(group_id) == [f"{name}_fb", f"{name}_pending"]
            assert tables.ensure_indexes(group_id) == []  # idempotent
            with connection.cursor() as cursor:
                for suffix, columns in (("_fb", "(feedback_at)"), ("_pending", "(ts)")):
                    cursor.execute(
                        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c "
                        "ON c.oid = i.indexrelid JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'alpha' "
                        "AND c.relname = %s",
                        [f"{name}{suffix}"],
                    )
                    assert cursor.fetchone() == (True,)
                    cursor.execute(
                        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'alpha' "
                        "AND tablename LIKE %s AND indexdef LIKE %s",
                        [f"{name}%", f"%{columns} WHERE%"],
                    )
                    # the parent, the default partition and today + 2 days ahead
                    assert cursor.fetchone()[0] == 1 + 1 + 3
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP TABLE IF EXISTS "alpha"."{name}" CASCADE')
            connection.set_schema_to_public()


def test_partitions_keep_rows_of_a_few_kilobytes_uncompressed_and_upkeep_catches_up(
    tenant_a,
):
    with schema_context("alpha"):
        group = _active_group("storage")
        made = dict(tables._children(group.pk))
        # every partition made by provision and ensure_partitions, the default too
        assert len(made) >= 2
        assert set(map(tuple, made.values())) == {("toast_tuple_target=4080",)}

        from django.db import connection

        older = sorted(made)[0]
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "alpha"."{older}" RESET (toast_tuple_target)')
        assert tables.ensure_storage(group.pk) == [older]
        assert tables.ensure_storage(group.pk) == []
        assert dict(tables._children(group.pk))[older] == ["toast_tuple_target=4080"]
