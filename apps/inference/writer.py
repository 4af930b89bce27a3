"""Writes inference rows into a group's table.

Durability, in the default `INFERENCE_LOG_MODE = "direct"`: write-through. The row is
committed before the prediction's response is sent, so a 2xx can never refer to a row
that a killed web process still held in memory. (One INSERT per request, sent with its
transaction in one round trip.) In the "spool" mode the row is appended to the
process's spool file before the answer instead, and copied into the table in batches
by `apps.inference.spool`, which says what that promises.

By default the log's commit does not wait for the WAL flush
(`INFERENCE_LOG_SYNCHRONOUS_COMMIT = "off"`, for this transaction only): a killed web
process still loses nothing, since the row is committed in PostgreSQL; a crash of
PostgreSQL itself could lose the last fraction of a second of log rows (at most
3 x wal_writer_delay). Set it to "on" to wait for the flush on every request.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg import sql
from psycopg.types.json import Jsonb

from apps.core.context import is_canonical_uuid7
from apps.core.db import (
    current_schema,
    forget_later,
    raw_commit,
    rendered,
    spooled_later,
)
from apps.inference.spool import MAX_LINE_BYTES, active_spool, encode_line
from apps.inference.tables import table_name

logger = logging.getLogger(__name__)

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
    text = str(request_id)
    if is_canonical_uuid7(text):  # as ModelHub writes them: no parse
        millis = int(text[:8] + text[9:13], 16)
    else:
        value = uuid.UUID(text)
        if value.version != 7:
            raise ValueError("not a UUIDv7")
        millis = value.int >> 80
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
    text = _json_text(value)
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


def row_values(row: dict[str, Any]) -> list[Any]:
    """A row's values in FIELDS order, as both modes send them: payloads as bounded
    JSON text (PostgreSQL casts it to jsonb), omitted fields as the table's neutral
    values."""
    values = [row.get(f) for f in FIELDS]
    values[_TS] = values[_TS] or uuid7_time(row["request_id"])
    values[_INPUT], values[_INPUT_CUT] = bounded_json(row.get("input"))
    values[_OUTPUT], values[_OUTPUT_CUT] = bounded_json(row.get("output"))
    if values[_EXPLANATION] is not None:
        values[_EXPLANATION] = _json_text(values[_EXPLANATION])
    for index in _TEXT_DEFAULTS:
        if values[index] is None:
            values[index] = ""
    for index in _TEXTS:  # PostgreSQL's text cannot hold NUL either
        text = values[index]
        if isinstance(text, str) and "\x00" in text:
            values[index] = text.replace("\x00", "\ufffd")
    for index in _FLAG_DEFAULTS:
        if values[index] is None:
            values[index] = False
    return values


_TS, _INPUT, _OUTPUT, _INPUT_CUT, _OUTPUT_CUT, _EXPLANATION = (
    FIELDS.index(name)
    for name in (
        "ts",
        "input",
        "output",
        "input_truncated",
        "output_truncated",
        "explanation",
    )
)
_TEXT_DEFAULTS = [FIELDS.index(name) for name in ("role", "requester", "door")]
_TEXTS = [
    FIELDS.index(name)
    for name in (
        "client_request_id",
        "routing_key",
        "requester",
        "error_code",
        "error_message",
    )
]
_FLAG_DEFAULTS = [FIELDS.index(name) for name in ("shadow", "explain_requested")]


def log_write(group_id: int, row: dict[str, Any]) -> bool:
    """Log one row: committed before this returns (autocommit, or with the caller's
    transaction when it holds one), or, with `INFERENCE_LOG_MODE = "spool"` in a
    process whose spool is started (a gunicorn web worker) and no transaction open,
    appended to the process's spool. Returns True when spooled."""
    values = row_values(row)
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up
    schema = current_schema(db)
    spool = active_spool() if settings.INFERENCE_LOG_MODE == "spool" else None
    # The organisation's id goes into the line; a bare schema (schema_context) has none.
    tenant_id = getattr(getattr(db, "tenant", None), "pk", None)
    if spool is not None and tenant_id is not None and not db.in_atomic_block:
        # The writes waiting for this row's commit (its provider calls' usage) go
        # in its line, when all of them can.
        carried = spooled_later()
        line = encode_line(schema, tenant_id, group_id, values, carried or ())
        if len(line) <= MAX_LINE_BYTES:
            try:
                spool.append(line)
            except OSError:
                logger.exception("inference spool unwritable; logging the row directly")
            else:
                if carried:
                    forget_later()
                return True
    # Committed before the answer leaves (write-through), in one round trip; inside a
    # caller's transaction the row commits or rolls back with its work.
    raw_commit(_insert_statement(schema, group_id), values)
    return False


_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _json_text(value: Any) -> str:
    """Compact JSON; infinity and NaN, which JSON (and jsonb) cannot hold, as text.

    Through orjson (several times faster) when the value holds only JSON's own types
    and its text no `null`: orjson would write NaN and infinity as null, and other
    types differently (a float subclass through `default`). Otherwise the standard
    library's encoder decides, as before; PostgreSQL stores the same jsonb from
    either."""
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: another type, an int beyond 64 bits
        pass
    else:
        if "null" not in text:
            return text
    try:
        return json.dumps(value, default=str, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_nonfinite_as_text(value), default=str, separators=(",", ":"))


def feedback_write(group_id: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Attach ground truth to logged rows by request id; unknown ids are reported.
    Each item: {"request_id", "label"? , "value"?}. Returns {"updated", "unknown"}.

    In the spool mode a row reaches its table a few milliseconds after its answer:
    ids not found yet whose time (a UUIDv7 carries it) is less than
    `SPOOL_VISIBLE_SECONDS` old are looked for again until then, with one query per
    round however many they are."""
    from django.utils import timezone

    table = sql.Identifier(current_schema(), table_name(group_id))
    statement = sql.SQL(
        "UPDATE {} SET feedback = %s, feedback_at = %s WHERE request_id = %s AND ts = %s"
    ).format(table)
    present = sql.SQL(
        "SELECT request_id FROM {} WHERE request_id = ANY(%s) AND ts BETWEEN %s AND %s"
    ).format(table)
    entries: list[tuple[str, uuid.UUID, datetime, Jsonb]] = []
    invalid: list[str] = []
    for item in items:
        rid = str(item.get("request_id", ""))
        try:
            ts = uuid7_time(rid)
        except ValueError:
            invalid.append(rid)
            continue
        truth = Jsonb({k: item[k] for k in ("label", "value") if k in item})
        entries.append((rid, uuid.UUID(rid), ts, truth))
    now = timezone.now()
    updated = 0
    unknown: list[str] = []
    waiting: list[tuple[str, uuid.UUID, datetime, Jsonb]] = []
    with connection.cursor() as cursor:
        while entries:
            for entry in entries:
                rid, uid, ts, truth = entry
                cursor.execute(statement, [truth, now, uid, ts])  # type: ignore[list-item]
                if cursor.rowcount:
                    updated += cursor.rowcount
                elif still_spooling(ts):
                    waiting.append(entry)
                else:
                    unknown.append(rid)
            entries = []
            while waiting and not entries:
                time.sleep(SPOOL_POLL_SECONDS)
                times = [ts for _, _, ts, _ in waiting]
                cursor.execute(
                    present, [[uid for _, uid, _, _ in waiting], min(times), max(times)]
                )
                arrived = {row[0] for row in cursor.fetchall()}
                still = []
                for entry in waiting:
                    if entry[1] in arrived:
                        entries.append(entry)
                    elif still_spooling(entry[2]):
                        still.append(entry)
                    else:
                        unknown.append(entry[0])
                waiting = still
    return {"updated": updated, "unknown": unknown, "invalid": invalid}


def still_spooling(moment: datetime) -> bool:
    """Whether a row of this time may still be on its way through the spool (spool
    mode, less than SPOOL_VISIBLE_SECONDS old; an id from the future is not)."""
    if settings.INFERENCE_LOG_MODE != "spool":
        return False
    from django.utils import timezone

    age = (timezone.now() - moment).total_seconds()
    return -1.0 < age < SPOOL_VISIBLE_SECONDS


SPOOL_VISIBLE_SECONDS = 2.0
SPOOL_POLL_SECONDS = 0.025
