"""Group invariants (services and database), inference tables in the tenant schema."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.core.errors import ApplicationError
from apps.groups.models import Membership, ModelGroup
from apps.groups.services import group_create, group_set_status, members_set
from apps.inference import tables
from apps.inference.models import InferenceTable
from apps.providers.services import provider_create
from apps.registry.services import model_import


@pytest.fixture
def versions(tenant_a):
    with schema_context("alpha"):
        provider = provider_create(
            actor="t",
            name="p",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            api_key="sk-x-12345678",
        )
        return [
            model_import(provider=provider, external_id=f"m{i}", actor="t").version_id
            for i in range(3)
        ]


def _group(versions, weights=(80, 20), slug="g"):
    group = group_create(name=slug.upper(), slug=slug, actor="t")
    members_set(
        group=group,
        actor="t",
        members=[
            {"version_id": versions[0], "role": "champion", "weight": weights[0]},
            {"version_id": versions[1], "role": "challenger", "weight": weights[1]},
            {"version_id": versions[2], "role": "shadow", "weight": 0},
        ],
    )
    return group


def test_activation_provisions_the_table_in_the_tenant_schema_only(versions):
    with schema_context("alpha"):
        group = group_set_status(group=_group(versions), status="active", actor="t")
        record = InferenceTable.objects.get(group=group)
        status = tables.status(group.pk)

    assert record.name == f"inference_log_g{group.pk}"
    assert status.partitions == tables.PARTITIONS_AHEAD + 1 and status.default_rows == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = %s",
            [record.name],
        )
        assert [row[0] for row in cursor.fetchall()] == ["alpha"]
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_name LIKE 'inference_log%%'"
        )
        assert cursor.fetchone()[0] == 0
    with (
        schema_context("beta"),
        connection.cursor() as cursor,
        pytest.raises(DatabaseError, match="does not exist"),
        transaction.atomic(),
    ):
        cursor.execute(f"SELECT count(*) FROM {record.name}")


def test_activating_with_bad_weights_is_refused(versions):
    with schema_context("alpha"):
        group = _group(versions, weights=(70, 20))
        with pytest.raises(ApplicationError, match="sum to 90, not 100"):
            group_set_status(group=group, status="active", actor="t")
        assert ModelGroup.objects.get(pk=group.pk).status == "draft"


def test_members_of_an_active_group_must_keep_summing_to_100(versions):
    with schema_context("alpha"):
        group = group_set_status(group=_group(versions), status="active", actor="t")
        with pytest.raises(ApplicationError, match="sum to 110"):
            members_set(
                group=group,
                actor="t",
                members=[
                    {"version_id": versions[0], "role": "champion", "weight": 90},
                    {"version_id": versions[1], "role": "challenger", "weight": 20},
                ],
            )
        with pytest.raises(ApplicationError, match="exactly one champion, not 2"):
            members_set(
                group=group,
                actor="t",
                members=[
                    {"version_id": versions[0], "role": "champion", "weight": 50},
                    {"version_id": versions[1], "role": "champion", "weight": 50},
                ],
            )
        swapped = members_set(
            group=group,
            actor="t",
            members=[
                {"version_id": versions[1], "role": "champion", "weight": 60},
                {"version_id": versions[0], "role": "challenger", "weight": 40},
            ],
        )
        assert [(m.version_id, m.role, m.weight) for m in swapped] == [
            (versions[1], "champion", 60),
            (versions[0], "challenger", 40),
        ]
        assert not Membership.objects.filter(
            group=group, version_id=versions[2]
        ).exists()
        assert (
            AuditEvent.objects.filter(
                action="group.members", object_id=str(group.pk)
            ).count()
            == 2
        )


def test_the_database_refuses_what_the_services_would_refuse(versions):
    with schema_context("alpha"):
        group = group_set_status(group=_group(versions), status="active", actor="t")
        with (
            pytest.raises(DatabaseError, match="sum to 50, not 100"),
            transaction.atomic(),
        ):
            Membership.objects.filter(group=group, role="champion").update(weight=30)
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with (
            pytest.raises(DatabaseError, match="one_active_champion"),
            transaction.atomic(),
        ):
            Membership.objects.filter(group=group, role="challenger").update(
                role="champion"
            )
        with (
            pytest.raises(DatabaseError, match="version_once_per_group"),
            transaction.atomic(),
        ):
            Membership.objects.create(
                group=group, version_id=versions[0], role="shadow"
            )


def test_a_version_is_in_a_group_once_and_unknown_versions_are_named(versions):
    with schema_context("alpha"):
        group = group_create(name="G2", slug="g2", actor="t")
        with pytest.raises(ApplicationError, match="only once"):
            members_set(
                group=group,
                actor="t",
                members=[
                    {"version_id": versions[0], "role": "champion", "weight": 50},
                    {"version_id": versions[0], "role": "challenger", "weight": 50},
                ],
            )
        with pytest.raises(
            ApplicationError, match=r"Unknown model versions: \[999999\]"
        ):
            members_set(
                group=group,
                actor="t",
                members=[{"version_id": 999999, "role": "champion", "weight": 100}],
            )


def test_rows_outside_the_partitions_land_in_the_default_and_are_reported(versions):
    from datetime import timedelta

    from django.utils import timezone

    from apps.core.context import new_request_id
    from apps.inference.writer import log_write

    with schema_context("alpha"):
        group = group_set_status(group=_group(versions), status="active", actor="t")
        late = timezone.now() + timedelta(days=30)
        log_write(
            group.pk, {"request_id": new_request_id(), "ts": late, "status": "ok"}
        )
        assert tables.status(group.pk).default_rows == 1
        created = tables.ensure_partitions(group.pk, today=late.date(), ahead=0)
        assert created == [tables.partition_name(group.pk, late.date())]
        assert tables.status(group.pk).default_rows == 0
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {tables.partition_name(group.pk, late.date())}"
            )
            assert cursor.fetchone()[0] == 1
