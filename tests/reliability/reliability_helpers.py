"""Shared pieces of the reliability suite: committed tenants for tests whose threads
or processes use their own connections, and a task that reports what it can see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from apps.core.db import current_schema


@contextmanager
def committed_tenant(slug: str) -> Iterator[str]:
    """A tenant created outside any test transaction and removed afterwards. Call it
    under `django_db_blocker.unblock()`."""
    from apps.tenants.models import Organization
    from apps.tenants.services import tenant_create, tenant_delete

    if Organization.objects.filter(schema_name=slug).exists():
        tenant_delete(slug=slug)  # left over by an interrupted run
    tenant_create(
        slug=slug,
        name=slug.title(),
        admin_email=f"admin@{slug}.test",
        domains=[f"{slug}.test"],
    )
    try:
        yield slug
    finally:
        connection.set_schema_to_public()
        tenant_delete(slug=slug)


def tenant_fingerprint(marker: str = "") -> dict[str, Any]:
    """A task: the schema it ran in and every registered model name it can read."""
    from apps.registry.models import RegisteredModel

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        sql_schema = cursor.fetchone()[0]
    return {
        "schema": current_schema(),
        "sql_schema": sql_schema,
        "models": sorted(RegisteredModel.objects.values_list("name", flat=True)),
        "marker": marker,
    }


def timed(func: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start
