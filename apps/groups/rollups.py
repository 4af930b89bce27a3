"""Hourly rollups per member, recomputed from the group's inference table.

A refresh reads the hours touched since the group's watermark — hours with new rows,
and hours whose rows got feedback since then (late feedback) — and recomputes them
whole with one aggregate statement, so running it twice changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from psycopg import sql

from apps.core.db import assert_tenant_schema
from apps.groups import stats
from apps.groups.models import MemberRollup, ModelGroup, RollupWatermark
from apps.inference.tables import table_exists, table_name

# Rows are written with the request's own time (ts), a little before they are
# committed: read back this far behind the watermark so none is missed.
COMMIT_LAG = timedelta(minutes=2)
# Feedback is looked for on rows at most this old (keeps the scan bounded).
FEEDBACK_LOOKBACK = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The hours to recompute: hours with new rows (the ts index) and hours whose rows got
# feedback since the watermark (the partial feedback_at index), each found by index.
_HOURS_SQL = """
SELECT date_trunc('hour', ts) AS h FROM {table} WHERE ts >= %(since)s
UNION
SELECT date_trunc('hour', ts) FROM {table}
WHERE feedback_at >= %(since)s AND feedback_at IS NOT NULL AND ts >= %(lookback)s
ORDER BY 1
"""

# Their rows, read by contiguous spans of hours ({spans}: "ts >= a AND ts < b" terms
# joined by OR), so that a late label on an old hour does not read every hour since.
_REFRESH_SQL = """
WITH r AS (
    SELECT member_id, version_id, role, status, latency_ms, output, feedback, ts,
           date_trunc('hour', ts) AS h
    FROM {table}
    WHERE ({spans}) AND member_id IS NOT NULL
),
hist AS (
    SELECT member_id, h, jsonb_object_agg(b, n) AS hist FROM (
        SELECT member_id, h, width_bucket(latency_ms::float8, %(bounds)s::float8[]) AS b,
               count(*) AS n
        FROM r WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3
    ) x GROUP BY 1, 2
),
agg AS (
    SELECT member_id, h,
        (array_agg(version_id ORDER BY ts DESC))[1] AS version_id,
        (array_agg(role ORDER BY ts DESC))[1] AS role,
        count(*) AS requests,
        count(*) FILTER (WHERE status <> 'ok') AS errors,
        COALESCE(sum(latency_ms), 0) AS latency_sum,
        count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label') AS labelled,
        count(*) FILTER (
            WHERE status = 'ok' AND feedback ? 'label'
              AND output->>'prediction' = feedback->>'label'
        ) AS correct,
        count(err) AS valued,
        COALESCE(sum(abs(err)), 0) AS abs_sum,
        COALESCE(sum(err * err), 0) AS sq_sum
    FROM (
        SELECT *, CASE
            WHEN status = 'ok'
             AND jsonb_typeof(output->'prediction') = 'number'
             AND jsonb_typeof(feedback->'value') = 'number'
            THEN (output->>'prediction')::float8 - (feedback->>'value')::float8
        END AS err
        FROM r
    ) e
    GROUP BY 1, 2
)
SELECT agg.member_id, agg.h, agg.version_id, agg.role, agg.requests, agg.errors,
       agg.latency_sum, agg.labelled, agg.correct, agg.valued, agg.abs_sum, agg.sq_sum, hist.hist
FROM agg LEFT JOIN hist USING (member_id, h)
"""


def hour_spans(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hour starts merged into [start, end) spans of consecutive hours."""
    spans: list[tuple[datetime, datetime]] = []
    for hour in hours:
        if spans and spans[-1][1] == hour:
            spans[-1] = (spans[-1][0], hour + timedelta(hours=1))
        else:
            spans.append((hour, hour + timedelta(hours=1)))
    return spans


def _dense(hist: Any) -> list[int]:
    sparse = json.loads(hist) if isinstance(hist, str) else (hist or {})
    out = [0] * stats.HIST_SIZE
    for key, count in dict(sparse).items():
        out[int(key)] += int(count)
    return out


def _db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        value: datetime = cursor.fetchone()[0]
    return value


@transaction.atomic
def rollups_refresh(*, group: ModelGroup, since: datetime | None = None) -> int:
    """Recompute the group's hourly rollups touched since the watermark (or since
    `since`, which forces a recompute from there). Returns the rows written."""
    schema = assert_tenant_schema()
    if not table_exists(group.pk):
        return 0
    mark, _ = RollupWatermark.objects.select_for_update().get_or_create(
        group=group, defaults={"watermark": EPOCH}
    )
    now = (
        _db_now()
    )  # taken first: rows committed during the refresh are re-read next time
    start = since if since is not None else mark.watermark - COMMIT_LAG
    table = sql.Identifier(schema, table_name(group.pk))
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(_HOURS_SQL).format(table=table),
            {"since": start, "lookback": min(start, now - FEEDBACK_LOOKBACK)},
        )
        spans = hour_spans([row[0] for row in cursor.fetchall()])
        rows: list[Any] = []
        if spans:
            terms = sql.SQL(" OR ").join(
                sql.SQL("(ts >= {} AND ts < {})").format(sql.Literal(a), sql.Literal(b))
                for a, b in spans
            )
            cursor.execute(
                sql.SQL(_REFRESH_SQL).format(table=table, spans=terms),
                {"bounds": list(stats.LATENCY_BOUNDS_MS)},
            )
            rows = cursor.fetchall()
    objects = [
        MemberRollup(
            group=group,
            member_id=member_id,
            bucket_start=hour,
            version_id=version_id,
            role=role or "",
            requests=requests,
            errors=errors,
            latency_sum_ms=float(latency_sum),
            labelled=labelled,
            correct=correct,
            valued=valued,
            abs_error_sum=float(abs_sum),
            sq_error_sum=float(sq_sum),
            latency_hist=_dense(hist),
        )
        for (
            member_id,
            hour,
            version_id,
            role,
            requests,
            errors,
            latency_sum,
            labelled,
            correct,
            valued,
            abs_sum,
            sq_sum,
            hist,
        ) in rows
    ]
    MemberRollup.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["member_id", "bucket_start"],
        update_fields=[
            "version_id",
            "role",
            "requests",
            "errors",
            "latency_sum_ms",
            "labelled",
            "correct",
            "valued",
            "abs_error_sum",
            "sq_error_sum",
            "latency_hist",
            "computed_at",
        ],
    )
    if now > mark.watermark:
        mark.watermark = now
        mark.save(update_fields=["watermark"])
    return len(objects)


def rollups_refresh_tenant() -> dict[str, int]:
    """Every group of the current schema that has an inference table."""
    out = {}
    for group in ModelGroup.objects.filter(inference_table__isnull=False):
        out[group.slug] = rollups_refresh(group=group)
    return out
