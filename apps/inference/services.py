"""Inference table registry and upkeep."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.db import assert_tenant_schema
from apps.inference import tables
from apps.inference.models import InferenceTable


@transaction.atomic
def inference_table_ensure(*, group: Any) -> InferenceTable:
    """Provision (idempotently) the group's table, its partitions ahead, and its row."""
    assert_tenant_schema()
    name = tables.provision(group.pk)
    record, _ = InferenceTable.objects.get_or_create(
        group=group, defaults={"name": name, "retention_days": group.retention_days}
    )
    InferenceTable.objects.filter(pk=record.pk).update(
        last_maintained_at=timezone.now()
    )
    return record


def inference_tables_maintain() -> list[str]:
    """Create the partitions ahead for every table of the current schema."""
    created: list[str] = []
    for record in InferenceTable.objects.all():
        tables.ensure_indexes(record.group_id)
        tables.ensure_storage(record.group_id)
        created += tables.ensure_partitions(record.group_id)
        InferenceTable.objects.filter(pk=record.pk).update(
            last_maintained_at=timezone.now()
        )
    return created
