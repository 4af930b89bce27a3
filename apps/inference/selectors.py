"""Reads of a group's inference log: the browser's filtered, keyset-paginated list,
one row by request id (one partition: a UUIDv7 carries its own time), the audit
events and sibling rows that share a request id, and the bounded CSV export rows.

Every statement names its table with psycopg.sql identifiers and passes every value
as a parameter; filters arrive as text (a query string) and are validated here, so a
bad one is a 400 naming it, never a 500.

The list and the export scan ranges of the log: they read through the analytics alias
(a replica when one is configured, so they may trail the primary by its lag). One row
by id and its related rows are point reads of rows that may have just been written:
they read the primary.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, time, timedelta
from time import sleep
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from psycopg import sql

from apps.audit.models import AuditEvent
from apps.core.db import analytics_alias, assert_tenant_schema
from apps.core.errors import ApplicationError, NotFoundError
from apps.inference.tables import table_name
from apps.inference.writer import FIELDS as WRITTEN_FIELDS
from apps.inference.writer import SPOOL_POLL_SECONDS, still_spooling, uuid7_time

DEFAULT_WINDOW = timedelta(days=7)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
EXPORT_MAX_ROWS = 100_000
EXPORT_BATCH = 1000
MAX_TEXT = 200
# Shadow copies are made by the worker moments after the request they copy; rows
# pointing at a request id are looked for this long after it (bounds the scan).
COPY_WINDOW = timedelta(hours=1)
ROLES = ("champion", "challenger", "shadow")
# A caller's own X-Request-ID (apps.core.context keeps only ids of this shape).
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STATUS_RE = re.compile(r"^[a-z_]{1,32}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MAX_ID = 2**63 - 1
# "+01:00" arrives as " 01:00" when a query string was not encoded.
_PLUS_AS_SPACE = re.compile(r"^(.+T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")

# What a logged row holds, as the writer writes it, plus the feedback joined later.
COLUMNS = (
    *(f for f in WRITTEN_FIELDS if f != "explain_requested"),
    "feedback",
    "feedback_at",
)
# Computed columns, by name.
EXPRESSIONS = {"has_explanation": sql.SQL("(explanation IS NOT NULL)")}
# The list leaves out the payloads: a page of 50 rows stays small.
LIST_COLUMNS = (
    *(c for c in COLUMNS if c not in ("input", "output", "explanation")),
    "has_explanation",
)
JSON_COLUMNS = {"input", "output", "explanation", "feedback"}

# The query-string names of the filters, in the order forms show them.
FILTER_NAMES = (
    "since",
    "until",
    "member_id",
    "version_id",
    "role",
    "status",
    "min_latency_ms",
    "has_feedback",
    "request_id",
    "client_request_id",
    "routing_key",
    "text",
    "shadow",
    "has_explanation",
)


@dataclass(frozen=True)
class InferenceFilters:
    """Validated filters. `since` is always set: every query is bounded in time."""

    since: datetime
    until: datetime | None = None
    member_id: int | None = None
    version_id: int | None = None
    role: str | None = None
    status: str | None = None
    min_latency_ms: float | None = None
    has_feedback: bool | None = None
    request_id: uuid.UUID | None = None
    client_request_id: str | None = None
    routing_key: str | None = None
    text: str | None = None
    shadow: bool | None = None
    has_explanation: bool | None = None

    def as_query(self) -> dict[str, str]:
        """The filters as query-string values (`since` resolved), for next links."""
        out: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, datetime):
                out[field.name] = value.isoformat()
            elif isinstance(value, bool):
                out[field.name] = "true" if value else "false"
            else:
                out[field.name] = str(value)
        return out


@dataclass(frozen=True)
class InferencePage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    filters: InferenceFilters


def uuid7_moment(value: uuid.UUID) -> datetime | None:
    """The time a UUIDv7 carries, or None (another version, or out of range)."""
    if value.version != 7:
        return None
    try:
        return uuid7_time(value)
    except (ValueError, OverflowError, OSError):
        return None


def _bad(name: str, message: str) -> ApplicationError:
    return ApplicationError(
        f"Invalid filter: {name} ({message}).",
        code="invalid_filter",
        fields={name: [message]},
    )


def _text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(name, "must be text")
    value = value.strip()
    if "\x00" in value:
        raise _bad(name, "must not contain NUL characters")
    return value or None


def _moment(params: Mapping[str, Any], name: str, *, end: bool) -> datetime | None:
    """An ISO date or date-time; a naive one is in the site's time zone. A bare
    date as `until` means the end of that day."""
    value = _text(params, name)
    if value is None:
        return None
    try:
        # A bare date first: parse_datetime would read it as midnight.
        day = parse_date(value)
        parsed = (
            datetime.combine(day + timedelta(days=1) if end else day, time.min)
            if day is not None
            else parse_datetime(_PLUS_AS_SPACE.sub(r"\1+\2", value))
        )
        if parsed is None:
            raise ValueError
        moment = parsed
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        moment.astimezone(UTC)  # out-of-range offsets fail here, not in SQL
    except (ValueError, OverflowError):
        raise _bad(
            name, "expected an ISO date or date-time, e.g. 2025-01-31T13:45"
        ) from None
    return moment


def _integer(params: Mapping[str, Any], name: str) -> int | None:
    value = _text(params, name)
    if value is None:
        return None
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > 19
        or int(value) > _MAX_ID
    ):
        raise _bad(name, "expected a positive whole number")
    return int(value)


def _flag(params: Mapping[str, Any], name: str) -> bool | None:
    value = _text(params, name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _bad(name, "expected true or false")


def inference_filters_parse(
    params: Mapping[str, Any], *, now: datetime | None = None
) -> InferenceFilters:
    """Validate the browser's filters (text from a query string). Empty values mean
    "not set". Raises ApplicationError (400, code invalid_filter) naming the filter.

    Without `since` the range is the 7 days before `until` (or now); a UUIDv7
    `request_id` without `since` starts at that id's own time instead, so an old
    request is found by its id alone."""
    now = now or timezone.now()
    until = _moment(params, "until", end=True)
    since: datetime | None = _moment(params, "since", end=False)

    request_id: uuid.UUID | None = None
    raw_id = _text(params, "request_id")
    if raw_id is not None:
        try:
            request_id = uuid.UUID(raw_id)
        except ValueError:
            raise _bad("request_id", "expected a UUID") from None

    client_id = _text(params, "client_request_id")
    if client_id is not None and not CLIENT_ID_RE.match(client_id):
        raise _bad("client_request_id", "expected up to 128 letters, digits or . _ : -")

    if since is None and request_id is not None:
        moment = uuid7_moment(request_id)
        since = moment - timedelta(seconds=1) if moment else None
    if since is None:
        try:
            since = (until or now) - DEFAULT_WINDOW
        except OverflowError:
            raise _bad("until", "too far in the past") from None
    if until is not None and until <= since:
        raise _bad("until", "must be later than since")

    role = _text(params, "role")
    if role is not None and role not in ROLES:
        raise _bad("role", f"expected one of {', '.join(ROLES)}")
    status = _text(params, "status")
    if status is not None and not _STATUS_RE.match(status):
        raise _bad("status", "expected a status such as ok or error")

    latency: float | None = None
    raw_latency = _text(params, "min_latency_ms")
    if raw_latency is not None:
        try:
            latency = float(raw_latency)
        except ValueError:
            latency = math.nan
        if not math.isfinite(latency) or latency < 0:
            raise _bad("min_latency_ms", "expected a number of milliseconds >= 0")

    routing_key = _text(params, "routing_key")
    if routing_key is not None and len(routing_key) > MAX_TEXT:
        raise _bad("routing_key", f"at most {MAX_TEXT} characters")
    text = _text(params, "text")
    if text is not None and len(text) > MAX_TEXT:
        raise _bad("text", f"at most {MAX_TEXT} characters")

    return InferenceFilters(
        since=since,
        until=until,
        member_id=_integer(params, "member_id"),
        version_id=_integer(params, "version_id"),
        role=role,
        status=status,
        min_latency_ms=latency,
        has_feedback=_flag(params, "has_feedback"),
        request_id=request_id,
        client_request_id=client_id,
        routing_key=routing_key,
        text=text,
        shadow=_flag(params, "shadow"),
        has_explanation=_flag(params, "has_explanation"),
    )


def inference_limit_parse(value: Any, *, default: int = DEFAULT_LIMIT) -> int:
    """The page size from a query string: 1..MAX_LIMIT."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise _bad("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(text)


# --- cursor ----------------------------------------------------------------------


def cursor_encode(ts: datetime, request_id: uuid.UUID | str) -> str:
    """Opaque position after a row: base64 of its (ts, request_id)."""
    raw = f"{ts.astimezone(UTC).isoformat()}|{request_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (ts, request_id) a cursor names; ApplicationError naming `cursor`."""
    try:
        padded = cursor.strip() + "=" * (-len(cursor.strip()) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        stamp, _, rid = raw.partition("|")
        ts = datetime.fromisoformat(stamp)
        if ts.tzinfo is None:
            raise ValueError
        return ts, uuid.UUID(rid)
    except (ValueError, UnicodeError, binascii.Error):
        raise _bad("cursor", "not a cursor this API gave out") from None


# --- queries ---------------------------------------------------------------------


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(
    filters: InferenceFilters, after: tuple[datetime, uuid.UUID] | None
) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = [sql.SQL("ts >= %s")]
    params: list[Any] = [filters.since]
    if filters.until is not None:
        clauses.append(sql.SQL("ts < %s"))
        params.append(filters.until)
    simple = (
        ("member_id", filters.member_id),
        ("version_id", filters.version_id),
        ("role", filters.role),
        ("status", filters.status),
        ("routing_key", filters.routing_key),
        ("shadow", filters.shadow),
        ("client_request_id", filters.client_request_id),
    )
    for column, value in simple:
        if value is not None:
            clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if filters.min_latency_ms is not None:
        clauses.append(sql.SQL("latency_ms >= %s"))
        params.append(filters.min_latency_ms)
    if filters.has_feedback is not None:
        clauses.append(
            sql.SQL("feedback IS NOT NULL")
            if filters.has_feedback
            else sql.SQL("feedback IS NULL")
        )
    if filters.has_explanation is not None:
        clauses.append(
            sql.SQL("explanation IS NOT NULL")
            if filters.has_explanation
            else sql.SQL("explanation IS NULL")
        )
    if filters.request_id is not None:
        # The row itself, and the rows that point at it: shadow copies carry it as
        # their client_request_id. A UUIDv7 names its time, so both halves stay in
        # a short window (indexes: request_id, ts) instead of scanning to now.
        rid = filters.request_id
        moment = uuid7_moment(rid)
        if moment is None:
            clauses.append(sql.SQL("(request_id = %s OR client_request_id = %s)"))
            params += [rid, str(rid)]
        else:
            clauses.append(
                sql.SQL(
                    "((request_id = %s AND ts >= %s AND ts < %s) "
                    "OR (client_request_id = %s AND ts >= %s AND ts < %s))"
                )
            )
            params += [
                rid,
                moment - timedelta(seconds=1),
                moment + timedelta(seconds=1),
                str(rid),
                moment - timedelta(seconds=1),
                moment + COPY_WINDOW,
            ]
    if filters.text is not None:
        pattern = f"%{_escape_like(filters.text)}%"
        clauses.append(sql.SQL("(input::text ILIKE %s OR output::text ILIKE %s)"))
        params += [pattern, pattern]
    if after is not None:
        clauses.append(sql.SQL("(ts, request_id) < (%s, %s)"))
        params += list(after)
    return sql.SQL(" AND ").join(clauses), params


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    # Django's raw cursor hands jsonb back as text.
    for name in JSON_COLUMNS & row.keys():
        if isinstance(row[name], str):
            row[name] = json.loads(row[name])
    return row


def _select(
    schema: str,
    group_id: int,
    columns: tuple[str, ...],
    where: sql.Composable,
    params: list[Any],
    limit: int,
    using: str = DEFAULT_DB_ALIAS,
) -> list[dict[str, Any]]:
    statement = sql.SQL(
        "SELECT {} FROM {} WHERE {} ORDER BY ts DESC, request_id DESC LIMIT %s"
    ).format(
        sql.SQL(", ").join(EXPRESSIONS.get(c, sql.Identifier(c)) for c in columns),
        sql.Identifier(schema, table_name(group_id)),
        where,
    )
    with connections[using].cursor() as cursor:
        cursor.execute(statement, [*params, limit])  # type: ignore[arg-type]
        return [
            _decode(dict(zip(columns, row, strict=True))) for row in cursor.fetchall()
        ]


def _filters(filters: InferenceFilters | Mapping[str, Any]) -> InferenceFilters:
    if isinstance(filters, InferenceFilters):
        return filters
    return inference_filters_parse(filters)


def _after(after: str | tuple[datetime, uuid.UUID] | None) -> Any:
    if after is None or after == "":
        return None
    if isinstance(after, str):
        return cursor_decode(after)
    return after


def has_log(group: Any) -> bool:
    """Only a group that was activated once owns an inference table."""
    return hasattr(group, "inference_table")


def inference_list(
    *,
    group: Any,
    filters: InferenceFilters | Mapping[str, Any],
    after: str | tuple[datetime, uuid.UUID] | None = None,
    limit: int = DEFAULT_LIMIT,
    columns: tuple[str, ...] = LIST_COLUMNS,
) -> InferencePage:
    """One page of the group's rows, newest first, strictly after the cursor.
    `filters` is an InferenceFilters or a query string's mapping (validated)."""
    parsed = _filters(filters)
    position = _after(after)
    limit = max(1, min(int(limit), MAX_LIMIT))
    if not has_log(group):
        return InferencePage(rows=[], next_cursor=None, filters=parsed)
    where, params = _where(parsed, position)
    rows = _select(
        assert_tenant_schema(),
        group.pk,
        columns,
        where,
        params,
        limit + 1,
        using=analytics_alias(),
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = cursor_encode(rows[-1]["ts"], rows[-1]["request_id"])
    return InferencePage(rows=rows, next_cursor=next_cursor, filters=parsed)


def inference_export_rows(
    *,
    group: Any,
    filters: InferenceFilters | Mapping[str, Any],
    max_rows: int | None = None,
    batch: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Every row of the filter, newest first, at most `max_rows` (EXPORT_MAX_ROWS),
    fetched in keyset batches so memory stays flat. Validates before it yields: call
    it eagerly (the filters are checked when the iterator is made)."""
    parsed = _filters(filters)
    bound = EXPORT_MAX_ROWS if max_rows is None else max_rows
    step = EXPORT_BATCH if batch is None else max(1, batch)
    if not has_log(group):
        return iter(())
    # Captured now: a streamed response runs after the view has returned.
    schema = assert_tenant_schema()
    using = analytics_alias()

    def rows() -> Iterator[dict[str, Any]]:
        sent = 0
        position: tuple[datetime, uuid.UUID] | None = None
        while sent < bound:
            size = min(step, bound - sent)
            where, params = _where(parsed, position)
            chunk = _select(schema, group.pk, COLUMNS, where, params, size, using=using)
            yield from chunk
            sent += len(chunk)
            if len(chunk) < size:
                return
            position = (chunk[-1]["ts"], chunk[-1]["request_id"])

    return rows()


def _parse_request_id(request_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(request_id))
    except ValueError:
        return None


def inference_get(*, group: Any, request_id: str, wait: bool = True) -> dict[str, Any]:
    """One row with its payloads and explanation. A UUIDv7 names its own time, so
    the lookup touches one partition, and (`wait`) a row that may still be in the
    spool is looked for again for a moment. NotFoundError (404) otherwise."""
    missing = NotFoundError(f"No inference '{request_id}' in group '{group.slug}'.")
    rid = _parse_request_id(request_id)
    if rid is None or not has_log(group):
        raise missing
    where: sql.Composable = sql.SQL("request_id = %s")
    params: list[Any] = [rid]
    moment = uuid7_moment(rid)
    if moment is not None:
        # A small window, not equality: pruning still picks one (or two) partitions.
        where = sql.SQL("request_id = %s AND ts >= %s AND ts < %s")
        params += [moment - timedelta(seconds=1), moment + timedelta(seconds=1)]
    schema = assert_tenant_schema()
    while True:
        rows = _select(schema, group.pk, COLUMNS, where, params, 1)
        if rows:
            return rows[0]
        if not wait or moment is None or not still_spooling(moment):
            raise missing
        sleep(SPOOL_POLL_SECONDS)  # a spooled row is in its table within milliseconds


def inference_related(
    *, group: Any, row: Mapping[str, Any], limit: int = 20
) -> list[dict[str, Any]]:
    """Rows tied to this one by request id: its shadow copies (their
    client_request_id is this id) and, for a shadow, the request it copied."""
    rid = str(row["request_id"])
    ts: datetime = row["ts"]
    found: list[dict[str, Any]] = []
    schema = assert_tenant_schema()
    where = sql.SQL("client_request_id = %s AND ts >= %s AND ts < %s")
    params: list[Any] = [rid, ts - timedelta(seconds=1), ts + COPY_WINDOW]
    found += _select(schema, group.pk, LIST_COLUMNS, where, params, limit)
    origin = _parse_request_id(row.get("client_request_id") or "")
    moment = uuid7_moment(origin) if origin is not None else None
    if moment is not None:
        where = sql.SQL("request_id = %s AND ts >= %s AND ts < %s")
        params = [origin, moment - timedelta(seconds=1), moment + timedelta(seconds=1)]
        found += _select(schema, group.pk, LIST_COLUMNS, where, params, 1)
    return [r for r in found if str(r["request_id"]) != rid]


def audit_events_for(*, row: Mapping[str, Any], limit: int = 100) -> list[AuditEvent]:
    """Audit events recorded under this row's request id, or under the caller's own
    X-Request-ID (kept as client_request_id when it was not a UUIDv7)."""
    ids = {str(row["request_id"])}
    if row.get("client_request_id"):
        ids.add(str(row["client_request_id"]))
    return list(
        AuditEvent.objects.filter(request_id__in=sorted(ids)).order_by(
            "created_at", "id"
        )[:limit]
    )
