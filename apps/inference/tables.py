"""ALL runtime DDL of ModelHub: the per-group inference log tables.

Each active group owns `inference_log_g<id>` in its tenant's schema (never public),
range-partitioned by day on `ts`, with daily partitions created ahead, a default
partition catching anything outside them (reported, not silent), and indexes for time
ranges, request ids and member+time. Names derive from primary keys only and every
statement is composed with psycopg.sql identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from psycopg import sql

from apps.core.db import assert_tenant_schema

PARTITIONS_AHEAD = 7

COLUMNS = """
    request_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    client_request_id text,
    member_id bigint,
    version_id bigint,
    role text NOT NULL DEFAULT '',
    shadow boolean NOT NULL DEFAULT false,
    routing_key text,
    requester text NOT NULL DEFAULT '',
    door text NOT NULL DEFAULT '',
    status text NOT NULL,
    error_code text,
    error_message text,
    latency_ms real,
    model_latency_ms real,
    input jsonb,
    output jsonb,
    input_truncated boolean NOT NULL DEFAULT false,
    output_truncated boolean NOT NULL DEFAULT false,
    explanation jsonb,
    explain_requested boolean NOT NULL DEFAULT false,
    feedback jsonb,
    feedback_at timestamptz,
    PRIMARY KEY (request_id, ts)
"""


def table_name(group_id: int) -> str:
    return f"inference_log_g{int(group_id)}"


def partition_name(group_id: int, day: date) -> str:
    return f"{table_name(group_id)}_p{day:%Y%m%d}"


def default_partition_name(group_id: int) -> str:
    return f"{table_name(group_id)}_default"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _schema() -> str:
    return assert_tenant_schema()


def _ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def table_exists(group_id: int, *, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether the group's table exists, as the `using` alias sees it."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            [f'"{_schema()}"."{table_name(group_id)}"'],
        )
        return bool(cursor.fetchone()[0])


# Every partition's storage: a row stays uncompressed in its page up to ~4 KB (the
# default, 2 KB, had PostgreSQL compress each explained row, ~2 KB with its SHAP
# values, with pglz on every background UPDATE: about a sixth of its time; and any
# prompt of 1-4 KB on the request path). Explained rows take ~25 % more room; rows
# without an explanation are far below either limit.
STORAGE = "toast_tuple_target = 4080"

# Indexes over the few rows a task looks for, so that it never reads the whole table:
# (name suffix, columns, predicate).
PARTIAL_INDEXES = (
    # Late feedback: the rollup refresh finds the hours whose rows got feedback since
    # its watermark instead of reading 30 days of rows.
    ("_fb", "(feedback_at)", "feedback_at IS NOT NULL"),
    # Rows sampled for a background explanation and not explained yet, oldest first:
    # each explain_pending batch (queued every few seconds while sampled traffic
    # flows) instead of a scan of every partition.
    ("_pending", "(ts)", "explain_requested AND explanation IS NULL"),
)


@transaction.atomic
def provision(
    group_id: int, *, today: date | None = None, ahead: int = PARTITIONS_AHEAD
) -> str:
    """Create the group's table (if missing), its default partition, indexes and the
    partitions from today to `ahead` days on. Idempotent."""
    schema = _schema()
    name = table_name(group_id)
    statements = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}) PARTITION BY RANGE (ts)").format(
            _ident(schema, name), sql.SQL(COLUMNS)
        ),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT WITH ({})"
        ).format(
            _ident(schema, default_partition_name(group_id)),
            _ident(schema, name),
            sql.SQL(STORAGE),
        ),
        # Columns added after a table was first created.
        sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS explain_requested boolean "
            "NOT NULL DEFAULT false"
        ).format(_ident(schema, name)),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (ts)").format(
            _ident(f"{name}_ts"), _ident(schema, name)
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (request_id)").format(
            _ident(f"{name}_rid"), _ident(schema, name)
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (member_id, ts)").format(
            _ident(f"{name}_member_ts"), _ident(schema, name)
        ),
        *(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} {} WHERE {}").format(
                _ident(f"{name}{suffix}"),
                _ident(schema, name),
                sql.SQL(columns),
                sql.SQL(where),
            )
            for suffix, columns, where in PARTIAL_INDEXES
        ),
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    ensure_partitions(group_id, today=today, ahead=ahead)
    return name


@transaction.atomic
def ensure_partitions(
    group_id: int, *, today: date | None = None, ahead: int = PARTITIONS_AHEAD
) -> list[str]:
    """Daily partitions from today through today+ahead; returns the ones created.
    Rows already sitting in the default partition for such a day are moved in."""
    schema = _schema()
    today = today or datetime.now(UTC).date()
    created = []
    existing = set(partitions(group_id))
    with connection.cursor() as cursor:
        for offset in range(ahead + 1):
            day = today + timedelta(days=offset)
            part = partition_name(group_id, day)
            if part in existing:
                continue
            start, end = _day_bounds(day)
            default = _ident(schema, default_partition_name(group_id))
            # A new range partition cannot be attached while the default holds rows in
            # that range: park them, attach, and put them back through the parent.
            cursor.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS _moved (LIKE {}) ON COMMIT DROP"
                ).format(_ident(schema, table_name(group_id)))
            )
            cursor.execute(
                sql.SQL(
                    "WITH gone AS (DELETE FROM {} WHERE ts >= %s AND ts < %s RETURNING *) "
                    "INSERT INTO _moved SELECT * FROM gone"
                ).format(default),
                [start, end],
            )
            cursor.execute(
                sql.SQL(
                    "CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (%s) TO (%s) "
                    "WITH ({})"
                ).format(
                    _ident(schema, part),
                    _ident(schema, table_name(group_id)),
                    sql.SQL(STORAGE),
                ),
                [start, end],
            )
            cursor.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM _moved").format(
                    _ident(schema, table_name(group_id))
                )
            )
            cursor.execute("TRUNCATE _moved")
            created.append(part)
    return created


def ensure_storage(group_id: int) -> list[str]:
    """Give the partitions of a table made by an older release the STORAGE of new
    ones (it applies to rows written from then on; a lock that blocks no reader or
    writer). Returns the partitions changed."""
    schema = _schema()
    setting = STORAGE.replace(" ", "")
    changed = [
        name for name, options in _children(group_id) if setting not in (options or [])
    ]
    with connection.cursor() as cursor:
        for part in changed:
            cursor.execute(
                sql.SQL("ALTER TABLE {} SET ({})").format(
                    _ident(schema, part), sql.SQL(STORAGE)
                )
            )
    return changed


def ensure_indexes(group_id: int) -> list[str]:
    """Give a table made before one of the PARTIAL_INDEXES existed that index,
    without blocking its writers: an invalid index on the parent only, then each
    partition's index built CONCURRENTLY and attached (the parent's becomes valid with
    the last). Inside a transaction (tests) the plain statement is used. Returns the
    names of the indexes built."""
    schema = _schema()
    table = _ident(schema, table_name(group_id))
    built = []
    with connection.cursor() as cursor:
        for suffix, columns, where in PARTIAL_INDEXES:
            name = f"{table_name(group_id)}{suffix}"
            cursor.execute(
                "SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}"."{name}"']
            )
            if cursor.fetchone()[0]:
                continue
            shape = sql.SQL("{} WHERE {}").format(sql.SQL(columns), sql.SQL(where))
            built.append(name)
            if connection.in_atomic_block:
                cursor.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} {}").format(
                        _ident(name), table, shape
                    )
                )
                continue
            cursor.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON ONLY {} {}").format(
                    _ident(name), table, shape
                )
            )
            for part in [*partitions(group_id), default_partition_name(group_id)]:
                part_index = f"{part}{suffix}"
                cursor.execute(
                    sql.SQL(
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} {}"
                    ).format(_ident(part_index), _ident(schema, part), shape)
                )
                cursor.execute(
                    sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
                        _ident(schema, name), _ident(schema, part_index)
                    )
                )
    return built


def partitions(group_id: int) -> list[str]:
    """Names of the day partitions (not the default), oldest first."""
    return [name for name, _ in _children(group_id) if not name.endswith("_default")]


def _children(group_id: int) -> list[tuple[str, list[str] | None]]:
    """(name, storage options) of every partition of the group's table, the default
    one included, by name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reloptions FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE n.nspname = %s AND p.relname = %s ORDER BY c.relname",
            [_schema(), table_name(group_id)],
        )
        return [(row[0], row[1]) for row in cursor.fetchall()]


@dataclass(frozen=True)
class TableStatus:
    name: str
    partitions: int
    first_day: str | None
    last_day: str | None
    default_rows: int
    total_bytes: int


def status(group_id: int) -> TableStatus:
    schema = _schema()
    name = table_name(group_id)
    parts = partitions(group_id)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                _ident(schema, default_partition_name(group_id))
            )
        )
        default_rows = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname LIKE %s",
            [schema, f"{name}%"],
        )
        size = int(cursor.fetchone()[0])

    def day(part: str) -> str:
        stamp = part.rsplit("_p", 1)[1]
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"

    return TableStatus(
        name=name,
        partitions=len(parts),
        first_day=day(parts[0]) if parts else None,
        last_day=day(parts[-1]) if parts else None,
        default_rows=default_rows,
        total_bytes=size,
    )


def drop_partition(group_id: int, part: str) -> None:
    """Detach and drop one day partition (retention calls this after archiving)."""
    if not part.startswith(f"{table_name(group_id)}_p"):
        raise ValueError(f"{part} is not a day partition of group {group_id}")
    schema = _schema()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                _ident(schema, table_name(group_id)), _ident(schema, part)
            )
        )
        cursor.execute(sql.SQL("DROP TABLE {}").format(_ident(schema, part)))
