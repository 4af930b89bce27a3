"""Writes inference rows into a group's table.

Durability: write-through. The row is committed before the prediction's response is
sent, so a 2xx can never refer to a row that a killed web process still held in
memory. (One INSERT per request, sent with its transaction in one round trip; psycopg
prepares it after a few uses.)

By default the log's commit does not wait for the WAL flush
(`INFERENCE_LOG_SYNCHRONOUS_COMMIT = "off"`, for this transaction only): a killed web
process still loses nothing, since the row is committed in PostgreSQL; a crash of
PostgreSQL itself could lose the last fraction of a second of log rows (at most
3 x wal_writer_delay). Set it to "on" to wait for the flush on every request.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from psycopg import sql
from psycopg.types.json import Jsonb

from apps.core.db import current_schema, raw_commit, rendered
from apps.inference.tables import table_name

FIELDS = (
    "request_id",
    "ts",
    "client_request_id",
    "member_id",
    "version_id",
    "role",
    "shadow",
    "routing_key",
    "requester",
    "door",
    "status",
    "error_code",
    "error_message",
    "latency_ms",
    "model_latency_ms",
    "input",
    "output",
    "input_truncated",
    "output_truncated",
    "explanation",
    "explain_requested",
)
JSON_FIELDS = {"input", "output", "explanation"}


def uuid7_time(request_id: str | uuid.UUID) -> datetime:
    """The creation time carried by a UUIDv7 (millisecond precision, UTC)."""
    value = uuid.UUID(str(request_id))
    if value.version != 7:
        raise ValueError("not a UUIDv7")
    millis = value.int >> 80
    from datetime import UTC

    return datetime.fromtimestamp(millis / 1000, tz=UTC)


# A NUL character in a JSON string: an odd number of backslashes, then u0000.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def bounded_json(value: Any) -> tuple[str | None, bool]:
    """(JSON text, truncated): payloads over the limit keep a preview and their size,
    flagged, never silently dropped. The log row sends this text as it is (PostgreSQL
    casts it to jsonb), so a payload is encoded once.

    PostgreSQL's jsonb cannot hold the NUL character, which a prompt or a model's
    answer may contain: the log's copy has U+FFFD (the replacement character) in its
    place, rather than losing the row and failing an answer already computed.
    Likewise infinity and NaN are logged as the strings "Infinity", "-Infinity" and
    "NaN"."""
    if value is None:
        return None, False
    try:
        text = json.dumps(value, default=str, separators=(",", ":"), allow_nan=False)
    except ValueError:  # infinity or NaN, which JSON (and jsonb) cannot hold
        text = json.dumps(_nonfinite_as_text(value), default=str, separators=(",", ":"))
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(r"\1\\ufffd", text)
    limit = settings.INFERENCE_MAX_PAYLOAD_BYTES
    if len(text) <= limit:
        return text, False
    preview = {"truncated": True, "bytes": len(text), "preview": text[: limit // 4]}
    return json.dumps(preview, separators=(",", ":")), True


def _nonfinite_as_text(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _nonfinite_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nonfinite_as_text(v) for v in value]
    return value


@lru_cache(maxsize=256)
def _insert_statement(schema: str, group_id: int) -> bytes:
    return rendered(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(schema, table_name(group_id)),
            sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS),
            sql.SQL(", ").join(sql.Placeholder() * len(FIELDS)),
        )
    )


def log_write(group_id: int, row: dict[str, Any]) -> None:
    """Insert one row (autocommit unless the caller holds a transaction)."""
    row = dict(row)
    row.setdefault("ts", uuid7_time(row["request_id"]))
    row["input"], row["input_truncated"] = bounded_json(row.get("input"))
    row["output"], row["output_truncated"] = bounded_json(row.get("output"))
    if row.get("explanation") is not None:
        row["explanation"] = Jsonb(row["explanation"])
    values = [row.get(f) for f in FIELDS]
    for index, name in enumerate(FIELDS):
        if values[index] is None and name in ("role", "requester", "door"):
            values[index] = ""
        if values[index] is None and name in (
            "shadow",
            "input_truncated",
            "output_truncated",
            "explain_requested",
        ):
            values[index] = False
    # Committed before the answer leaves (write-through), in one round trip; inside a
    # caller's transaction the row commits or rolls back with its work.
    raw_commit(_insert_statement(current_schema(), group_id), values)


def feedback_write(group_id: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Attach ground truth to logged rows by request id; unknown ids are reported.
    Each item: {"request_id", "label"? , "value"?}. Returns {"updated", "unknown"}."""
    from django.utils import timezone

    unknown: list[str] = []
    invalid: list[str] = []
    updated = 0
    statement = sql.SQL(
        "UPDATE {} SET feedback = %s, feedback_at = %s WHERE request_id = %s AND ts = %s"
    ).format(sql.Identifier(current_schema(), table_name(group_id)))
    now = timezone.now()
    with connection.cursor() as cursor:
        for item in items:
            rid = str(item.get("request_id", ""))
            try:
                ts = uuid7_time(rid)
            except ValueError:
                invalid.append(rid)
                continue
            truth = {k: item[k] for k in ("label", "value") if k in item}
            cursor.execute(statement, [Jsonb(truth), now, rid, ts])  # type: ignore[list-item]
            if cursor.rowcount:
                updated += cursor.rowcount
            else:
                unknown.append(rid)
    return {"updated": updated, "unknown": unknown, "invalid": invalid}
