"""Scheduled upkeep of the inference tables, fanned out over tenants."""

from __future__ import annotations

from django_tenants.utils import get_public_schema_name

from apps.core.tasks import tenant_async
from apps.inference.services import inference_tables_maintain
from apps.tenants.models import Organization


def maintain_partitions_all_tenants() -> int:
    """Platform task (public): one tenant task per organisation. Returns the count."""
    schemas = list(
        Organization.objects.exclude(schema_name=get_public_schema_name()).values_list(
            "schema_name", flat=True
        )
    )
    for schema in schemas:
        tenant_async(maintain_partitions, schema_name=schema, on_commit=False)
    return len(schemas)


def maintain_partitions() -> list[str]:
    """Tenant task: partitions ahead for every inference table of this schema."""
    return inference_tables_maintain()
