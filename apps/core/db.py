"""Typed access to the tenant state django-tenants keeps on the connection."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import get_public_schema_name


def current_schema() -> str:
    """The schema the default connection is bound to right now."""
    return str(getattr(connection, "schema_name", get_public_schema_name()))


def is_public_schema(schema_name: str | None = None) -> bool:
    name = current_schema() if schema_name is None else schema_name
    return name == get_public_schema_name()


def set_public_schema() -> None:
    connection.set_schema_to_public()  # type: ignore[attr-defined]


def assert_tenant_schema() -> str:
    """Refuse to go on in the public schema; returns the tenant schema name."""
    schema = current_schema()
    if is_public_schema(schema):
        raise RuntimeError("this operation needs a tenant schema, not public")
    return schema
