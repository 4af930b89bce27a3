"""Scheduled analytics, fanned out over tenants: rollups and promotion rules."""

from __future__ import annotations

from django_tenants.utils import get_public_schema_name

from apps.core.tasks import tenant_async
from apps.tenants.models import Organization


def _fan_out(path: str) -> int:
    schemas = list(
        Organization.objects.exclude(schema_name=get_public_schema_name()).values_list(
            "schema_name", flat=True
        )
    )
    for schema in schemas:
        tenant_async(path, schema_name=schema, on_commit=False)
    return len(schemas)


def rollups_refresh_all_tenants() -> int:
    """Platform task (public): one rollup refresh per organisation."""
    return _fan_out("apps.groups.rollups.rollups_refresh_tenant")


def promotion_auto_all_tenants() -> int:
    """Platform task (public): one promotion-rules pass per organisation."""
    return _fan_out("apps.groups.promotion.promotion_auto_tenant")
