"""Scheduled upkeep of the inference tables, fanned out over tenants."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django_tenants.utils import get_public_schema_name
from psycopg import sql

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
    SKIP LOCKED, so two workers never do the same rows). Returns how many.

    Each batch is one transaction: its rows locked, their explanations stored and
    folded into the global importance. Run as a task (autocommit), the batches take
    turns on two connections of their own, so that one batch is stored by PostgreSQL
    while the next is computed; inside a caller's transaction they run one after the
    other in it."""
    from django.db import connection

    from apps.core.db import current_schema
    from apps.inference.tables import table_name

    schema = current_schema()
    table = sql.Identifier(schema, table_name(group_id))
    if connection.in_atomic_block:
        return _explain_in_turn(table, batch, budget_seconds)
    return _explain_overlapped(schema, table, batch, budget_seconds)


@dataclass
class _Explained:
    """A locked batch, explained: what its transaction stores."""

    request_ids: list[str]
    stamps: list[str]
    documents: list[Any]  # each row's explanation, in that order
    importance: list[tuple[int, list[str], Any]]  # (version, features, values)


def _lock_batch(cursor: Any, table: sql.Identifier, batch: int) -> list[tuple]:
    # Lock the batch on its keys alone, then read each row by its primary key:
    # ordering the pending rows with their inputs sorts every pending input (spilling
    # to disk once there is a backlog). The keys and inputs travel as text: no UUID
    # or datetime objects per row, and the inputs parsed in one call.
    cursor.execute(
        sql.SQL(
            "WITH locked AS (SELECT request_id, ts FROM {table} "
            "WHERE explain_requested AND explanation IS NULL "
            "ORDER BY ts LIMIT %s FOR UPDATE SKIP LOCKED) "
            "SELECT l.request_id::text, l.ts::text, r.version_id, r.input::text "
            "FROM locked AS l "
            "CROSS JOIN LATERAL (SELECT version_id, input FROM {table} AS t "
            "WHERE t.request_id = l.request_id AND t.ts = l.ts LIMIT 1) AS r"
        ).format(table=table),
        [batch],
    )
    return list(cursor.fetchall())


def _explain(rows: list[tuple]) -> _Explained:
    """The batch's explanations, computed here (the explainers are read through
    Django's connection); nothing is written."""
    from apps.inference.explain import ExplanationUnavailable, explain_batch

    by_version: dict[int, list[tuple]] = {}
    for row in rows:
        by_version.setdefault(row[2], []).append(row)
    out = _Explained([], [], [], [])
    documents = out.documents
    for version_id, items in by_version.items():
        out.request_ids += [r[0] for r in items]
        out.stamps += [r[1] for r in items]
        inputs = _json_values([r[3] for r in items])
        flat = [r for x in inputs for r in (x if isinstance(x, list) else [x])]
        # A batch that cannot be explained keeps its reason in each row, so that the
        # next pass does not take (and fail on) the same rows again.
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
        out.importance.append((version_id, explained.feature_names, explained.values))
        position = 0
        for given in inputs:
            if isinstance(given, list):
                documents.append(explained.items[position : position + len(given)])
                position += len(given)
            else:
                documents.append(explained.items[position])
                position += 1
    return out


def _store(raw: Any, table: sql.Identifier, work: _Explained) -> None:
    """Store a batch's explanations and importance on `raw` (a psycopg connection),
    in its open transaction."""
    import psycopg

    from apps.inference.importance import importance_add_values

    with psycopg.Cursor(raw) as cursor:
        # In the versions' order: two passes whose batches hold the same versions
        # (a champion and a challenger) lock their importance rows alike, never
        # each waiting for the other.
        for version_id, features, values in sorted(
            work.importance, key=lambda item: item[0]
        ):
            importance_add_values(version_id, features, values, cursor=cursor)
        # One statement for the batch: the keys as arrays and the explanations as one
        # JSON array (encoded once, split by the database), zipped by position. Bound
        # on the server (the client-side binding of Django's cursors would quote the
        # ~1.2 MB of JSON into the statement text, for the server to scan again). The
        # rows are found through the pending rows' partial index, between the batch's
        # first and last time: a batch's work, whatever the partition's size (joined
        # on the keys alone, the planner would hash the whole partition every batch).
        times = [datetime.fromisoformat(stamp) for stamp in work.stamps]
        cursor.execute(
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
                _json_text(work.documents),
                work.request_ids,
                work.stamps,
                min(times),
                max(times),
            ],
            prepare=False,
        )


def _explain_in_turn(table: sql.Identifier, batch: int, budget_seconds: float) -> int:
    """The batches one after the other, each in a savepoint of the caller's
    transaction on Django's connection."""
    from django.db import connection, transaction

    started, done = time.monotonic(), 0
    while time.monotonic() - started < budget_seconds:
        with transaction.atomic(), connection.cursor() as cursor:
            rows = _lock_batch(cursor, table, batch)
            if not rows:
                return done
            work = _explain(rows)
            with connection.wrap_database_errors:
                _store(connection.connection, table, work)
            done += len(work.documents)
    return done


def _explain_overlapped(
    schema: str, table: sql.Identifier, batch: int, budget_seconds: float
) -> int:
    """The batches taking turns on two connections: while a batch's transaction is
    stored and committed on one (by a thread that mostly waits for PostgreSQL), the
    next batch is locked and computed on the other. A connection's next batch waits
    for its previous commit."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import psycopg

    from apps.core.db import libpq_params

    def commit(raw: psycopg.Connection[Any], work: _Explained) -> int:
        try:
            _store(raw, table, work)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        return len(work.documents)

    def connect() -> psycopg.Connection[Any]:
        raw = psycopg.connect(**libpq_params())
        try:
            # The tenant's schema first, as Django's connection has it (the
            # importance table is named without its schema).
            raw.execute(
                sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))
            )
            raw.commit()
        except BaseException:
            raw.close()
            raise
        return raw

    lanes: list[psycopg.Connection[Any]] = []
    pending: list[Future[int] | None] = [None, None]
    started, done, turn = time.monotonic(), 0, 0
    with ThreadPoolExecutor(1, thread_name_prefix="explain-store") as storing:
        try:
            while time.monotonic() - started < budget_seconds:
                if len(lanes) == turn:  # the second only once there is a second batch
                    lanes.append(connect())
                raw = lanes[turn]
                previous = pending[turn]
                if previous is not None:
                    done += previous.result()
                    pending[turn] = None
                with raw.cursor() as cursor:
                    rows = _lock_batch(cursor, table, batch)
                if not rows:
                    raw.rollback()
                    break
                try:
                    work = _explain(rows)
                except BaseException:
                    raw.rollback()
                    raise
                pending[turn] = storing.submit(commit, raw, work)
                turn = 1 - turn
            for index, future in enumerate(pending):
                if future is not None:
                    done += future.result()
                    pending[index] = None
        except BaseException as error:
            # No connection is closed under a commit still running; a failure of
            # that commit as well is logged.
            for future in pending:
                other = None if future is None else future.exception()
                if other is not None and other is not error:
                    logger.warning(
                        "storing a batch of explanations failed as well: %r", other
                    )
            raise
        finally:
            for raw in lanes:
                raw.close()
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
