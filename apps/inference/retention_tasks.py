"""Scheduled retention, fanned out over tenants (daily; see core 0002 migration)."""

from __future__ import annotations

from typing import Any

from django_tenants.utils import get_public_schema_name

from apps.core.tasks import tenant_async
from apps.inference.retention import apply_retention_tenant
from apps.tenants.models import Organization


def apply_retention_all_tenants() -> int:
    """Platform task (public): one retention task per organisation. Returns the count."""
    schemas = list(
        Organization.objects.exclude(schema_name=get_public_schema_name()).values_list(
            "schema_name", flat=True
        )
    )
    for schema in schemas:
        tenant_async(apply_retention_in_tenant, schema_name=schema, on_commit=False)
    return len(schemas)


def apply_retention_in_tenant() -> dict[str, Any]:
    """Tenant task: archive and drop the partitions past retention of every group.
    Safe to run twice. Fails (after doing all it can) when a partition could not be
    archived, so the failure shows in the task list; that partition is kept."""
    results = apply_retention_tenant()
    archived = [r for r in results if r.action == "archived"]
    failed = [r for r in results if r.action == "failed"]
    summary = {
        "partitions": len(archived),
        "rows": sum(r.rows for r in archived),
        "failed": [f"{r.group_slug} {r.day:%Y-%m-%d}: {r.error}" for r in failed],
    }
    if failed:
        raise RuntimeError(
            f"retention failed for {len(failed)} partition(s): {summary}"
        )
    return summary
