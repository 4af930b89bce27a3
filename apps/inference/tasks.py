"""Scheduled upkeep of the inference tables, fanned out over tenants."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django_tenants.utils import get_public_schema_name

from apps.core.tasks import tenant_async
from apps.inference.services import inference_tables_maintain
from apps.tenants.models import Organization

logger = logging.getLogger(__name__)


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
    import time

    import psycopg
    from django.db import connection, transaction
    from psycopg import sql

    from apps.core.db import current_schema
    from apps.inference.explain import ExplanationUnavailable, explain_batch
    from apps.inference.importance import importance_add_values
    from apps.inference.tables import table_name

    table = sql.Identifier(current_schema(), table_name(group_id))
    started, done = time.monotonic(), 0
    while time.monotonic() - started < budget_seconds:
        with transaction.atomic(), connection.cursor() as cursor:
            # Lock the batch on its keys alone, then read each row by its primary
            # key: ordering the pending rows with their inputs sorts every pending
            # input (spilling to disk once there is a backlog). The keys travel as
            # text, only to be sent back: no UUID or datetime objects per row.
            cursor.execute(
                sql.SQL(
                    "WITH locked AS (SELECT request_id, ts FROM {table} "
                    "WHERE explain_requested AND explanation IS NULL "
                    "ORDER BY ts LIMIT %s FOR UPDATE SKIP LOCKED) "
                    "SELECT l.request_id::text, l.ts::text, r.version_id, r.input "
                    "FROM locked AS l "
                    "CROSS JOIN LATERAL (SELECT version_id, input FROM {table} AS t "
                    "WHERE t.request_id = l.request_id AND t.ts = l.ts LIMIT 1) AS r"
                ).format(table=table),
                [batch],
            )
            rows = cursor.fetchall()
            if not rows:
                return done
            by_version: dict[int, list[tuple]] = {}
            for row in rows:
                by_version.setdefault(row[2], []).append(row)
            request_ids: list[str] = []
            stamps: list[str] = []
            documents: list[Any] = []  # each row's explanation, in that order
            for version_id, items in by_version.items():
                request_ids += [r[0] for r in items]
                stamps += [r[1] for r in items]
                inputs = _json_values([r[3] for r in items])
                flat = [r for x in inputs for r in (x if isinstance(x, list) else [x])]
                # A batch that cannot be explained keeps its reason in each row, so
                # that the next pass does not take (and fail on) the same rows again.
                try:
                    explained = explain_batch(version_id, flat)
                except ExplanationUnavailable as exc:
                    documents += [{"error": str(exc)}] * len(items)
                    continue
                except DatabaseError:
                    raise
                except Exception as exc:
                    logger.warning(
                        "explaining %d rows of version %s failed: %r",
                        len(items),
                        version_id,
                        exc,
                    )
                    reason = f"explanation failed: {type(exc).__name__}: {exc}"
                    documents += [{"error": reason[:500]}] * len(items)
                    continue
                if not _all_finite(explained):
                    # JSON (and jsonb) has no NaN or infinity; the sums of the global
                    # importance would be poisoned by them too.
                    reason = "the explanation holds a number that is not finite"
                    documents += [{"error": reason}] * len(items)
                    continue
                importance_add_values(
                    version_id, explained.feature_names, explained.values
                )
                position = 0
                for given in inputs:
                    if isinstance(given, list):
                        documents.append(
                            explained.items[position : position + len(given)]
                        )
                        position += len(given)
                    else:
                        documents.append(explained.items[position])
                        position += 1
            # One statement for the batch: the keys as arrays and the explanations as
            # one JSON array (encoded once, split by the database), zipped by position.
            # Bound on the server (the connection's cursors bind on the client: they
            # would quote the ~1.2 MB of JSON into the statement text, for the server
            # to scan again); same connection, same transaction, same errors.
            # The rows are found through the pending rows' partial index, between the
            # batch's first and last time: a batch's work, whatever the partition's
            # size (joined on the keys alone, the planner would hash the whole
            # partition for every batch).
            times = [datetime.fromisoformat(stamp) for stamp in stamps]
            raw = connection.connection
            with connection.wrap_database_errors, psycopg.Cursor(raw) as bound:
                bound.execute(
                    sql.SQL(
                        "UPDATE {} AS t SET explanation = u.explanation, "
                        "explain_requested = false "
                        "FROM ROWS FROM (jsonb_array_elements(%s::jsonb), "
                        "unnest(%s::uuid[]), unnest(%s::timestamptz[])) "
                        "AS u(explanation, request_id, ts) "
                        "WHERE t.request_id = u.request_id AND t.ts = u.ts "
                        "AND t.explain_requested AND t.explanation IS NULL "
                        "AND t.ts >= %s AND t.ts <= %s"
                    ).format(table),
                    [
                        _json_text(documents),
                        request_ids,
                        stamps,
                        min(times),
                        max(times),
                    ],
                    prepare=False,
                )
            done += len(documents)
    return done


def _json_values(values: list[Any]) -> list[Any]:
    """jsonb column values as the connection returns them (text, or already
    decoded) as Python values; text is parsed in one call for the whole batch."""
    if all(isinstance(v, str) for v in values):
        return list(_json_loads("[" + ",".join(values) + "]"))
    return [_json_loads(v) if isinstance(v, str) else v for v in values]


def _json_loads(text: str) -> Any:
    """json.loads, through orjson (several times faster). What orjson refuses and
    the standard library reads (a number beyond a double, such as 1e400) is read
    as before."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _all_finite(explained: Any) -> bool:
    """Whether an Explained batch holds only finite numbers (contributions, base
    values, outputs)."""
    import math

    import numpy as np

    return bool(np.isfinite(explained.values).all()) and all(
        math.isfinite(item["base_value"]) and math.isfinite(item["output"])
        for item in explained.items
    )


def _json_text(documents: list[Any]) -> str:
    """The batch's explanations as one JSON text, through orjson (several times
    faster than json.dumps; PostgreSQL stores the same jsonb from either, the
    floats being written in their shortest round-trip form by both). The caller
    keeps NaN and infinity out (orjson would write them as null); what orjson cannot
    encode (an integer beyond 64 bits) goes through json.dumps."""
    import orjson

    try:
        return orjson.dumps(documents).decode()
    except orjson.JSONEncodeError:
        pass
    return json.dumps(documents, separators=(",", ":"))
