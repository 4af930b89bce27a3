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


def explain_pending(
    group_id: int, *, batch: int = 2000, budget_seconds: float = 20.0
) -> int:
    """Tenant task: explain the group's sampled rows in batches (rows locked with
    SKIP LOCKED, so two workers never do the same rows). Returns how many."""
    import json
    import time

    from django.db import connection, transaction
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from apps.core.db import current_schema
    from apps.inference.explain import ExplanationUnavailable, explain_rows
    from apps.inference.importance import importance_add
    from apps.inference.tables import table_name

    table = sql.Identifier(current_schema(), table_name(group_id))
    started, done = time.monotonic(), 0
    while time.monotonic() - started < budget_seconds:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                sql.SQL(
                    "SELECT request_id, ts, version_id, input FROM {} "
                    "WHERE explain_requested AND explanation IS NULL "
                    "ORDER BY ts LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(table),
                [batch],
            )
            rows = cursor.fetchall()
            if not rows:
                return done
            by_version: dict[int, list[tuple]] = {}
            for row in rows:
                by_version.setdefault(row[2], []).append(row)
            updates = []
            for version_id, items in by_version.items():
                inputs = [
                    json.loads(r[3]) if isinstance(r[3], str) else r[3] for r in items
                ]
                flat = [r for x in inputs for r in (x if isinstance(x, list) else [x])]
                try:
                    explained = explain_rows(version_id, flat)
                except ExplanationUnavailable as exc:
                    note = {"error": str(exc)}
                    updates += [(Jsonb(note), r[0], r[1]) for r in items]
                    continue
                importance_add(version_id, explained)
                position = 0
                for (request_id, ts, _, _), given in zip(items, inputs, strict=True):
                    count = len(given) if isinstance(given, list) else 1
                    chunk = explained[position : position + count]
                    position += count
                    value = chunk if isinstance(given, list) else chunk[0]
                    updates.append((Jsonb(value), request_id, ts))
            # One statement for the batch: the rows' keys and values as arrays.
            cursor.execute(
                sql.SQL(
                    "UPDATE {} AS t SET explanation = u.explanation, "
                    "explain_requested = false "
                    "FROM unnest(%s::jsonb[], %s::uuid[], %s::timestamptz[]) "
                    "AS u(explanation, request_id, ts) "
                    "WHERE t.request_id = u.request_id AND t.ts = u.ts"
                ).format(table),
                [
                    [u[0] for u in updates],
                    [u[1] for u in updates],
                    [u[2] for u in updates],
                ],
            )
            done += len(updates)
    return done
