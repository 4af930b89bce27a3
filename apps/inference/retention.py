"""Retention and archival of the inference logs.

Every day partition of a group's table older than the group's retention is written to
Parquet at ARCHIVE_ROOT/<schema>/<group id>/<YYYY-MM-DD>.parquet, verified, and only
then detached and dropped (through apps.inference.tables, the owner of all DDL):

1. Export the partition in batches (one statement, so one snapshot) to a temp file,
   fsync it and rename it into place; every row's hash is summed on the way.
2. In one transaction: `LOCK TABLE <partition> IN ACCESS EXCLUSIVE MODE`, count and
   hash the rows again. If anything changed since the export (a late row, feedback),
   export again under the lock, where nothing can change any more.
3. Re-read the file: its rows must be the partition's rows counted under the lock
   (plus rows archived earlier for the same day); then drop the partition and record
   an `InferenceArchive` in the same transaction.

New traffic goes to today's partition and only waits for the short detach; it never
touches the partitions being archived. A file already there for the day (a crash
between rename and drop, or late rows for an archived day) is read and merged:
the archive for a day always keeps every row it ever held, so it is reused when
nothing changed and never overwritten with fewer rows.

Lock waits are capped (LOCK_TIMEOUT) and retried a few times: behind a long query on
the table retention gives way instead of making traffic queue behind its lock; a day
it still cannot lock is reported as failed, kept, and tried again on the next run.

Retention days: `ModelGroup.retention_days` is the group's own value;
`InferenceSettings.default_retention_days` is the tenant's default for new groups (and
for a group whose value is 0).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from psycopg import errors as pg_errors
from psycopg import sql
from rest_framework import status

from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, NotFoundError
from apps.groups.models import ModelGroup
from apps.inference import tables
from apps.inference.models import InferenceArchive, InferenceSettings

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
BATCH_ROWS = 10_000
# Lock waits are short and retried: while retention waits for the table's lock, new
# traffic queues behind it.
LOCK_TIMEOUT = "5s"
LOCK_ATTEMPTS = 3
LOCK_RETRY_SECONDS = 2.0
CHUNK = 1024 * 1024
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# PostgreSQL type -> Arrow type; jsonb/json, uuid, numeric and anything unknown are
# read as text (`::text`) and stored as strings.
ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "bytea": pa.binary(),
}


_RETRYABLE = (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected)


class ArchiveError(ApplicationError):
    code = "archive_failed"
    status_code = status.HTTP_409_CONFLICT


@dataclass(frozen=True)
class ArchiveResult:
    """One partition past retention: what was (or, in a dry run, would be) done.

    `rows` are the partition's rows (removed from the database); `file_rows` the rows
    in the day's Parquet file, which also keeps rows archived earlier for that day.
    """

    schema: str
    group_id: int
    group_slug: str
    day: date
    partition: str
    action: str  # "archived" | "would_archive" | "failed"
    rows: int
    file_rows: int
    path: str  # relative to ARCHIVE_ROOT
    bytes: int = 0
    sha256: str = ""
    # The file already on disk held exactly these rows (dry run: a file exists and
    # would be merged with the partition's rows).
    reused: bool = False
    error: str = ""


@dataclass(frozen=True)
class _Column:
    name: str
    arrow: pa.DataType
    as_text: bool


@dataclass(frozen=True)
class _Written:
    partition_rows: int
    digest: int
    file_rows: int
    reused: bool


# --- retention days ---------------------------------------------------------------


def default_retention_days() -> int:
    """The tenant's default retention for new groups (30 until someone sets it)."""
    value = (
        InferenceSettings.objects.filter(pk=1)
        .values_list("default_retention_days", flat=True)
        .first()
    )
    return int(value or DEFAULT_RETENTION_DAYS)


@transaction.atomic
def inference_settings_set(*, default_retention_days: int) -> InferenceSettings:
    """Set the tenant's default retention (days, at least 1)."""
    if default_retention_days < 1:
        raise ApplicationError(
            "Retention must be at least one day.",
            fields={"default_retention_days": ["Must be at least 1."]},
        )
    record, _ = InferenceSettings.objects.update_or_create(
        pk=1, defaults={"default_retention_days": default_retention_days}
    )
    return record


def retention_days_for(group: ModelGroup) -> int:
    """The group's own retention, or the tenant default when the group has none."""
    return int(group.retention_days or default_retention_days())


# --- paths ------------------------------------------------------------------------


def tenant_archive_root(schema: str) -> Path:
    """ARCHIVE_ROOT/<schema>/, resolved; a tenant's archives never leave it."""
    base = Path(settings.ARCHIVE_ROOT).resolve()
    root = (base / schema).resolve()
    if root.parent != base:
        raise RuntimeError(f"schema name {schema!r} does not make an archive directory")
    return root


def archive_path(schema: str, group_id: int, day: date) -> Path:
    """Where a day of a group's log is archived (always built from ids and a date)."""
    root = tenant_archive_root(schema)
    path = root / str(int(group_id)) / f"{day:%Y-%m-%d}.parquet"
    if not path.resolve().is_relative_to(root):
        raise RuntimeError(f"archive path {path} leaves {root}")
    return path


def _relative(path: Path) -> str:
    return path.relative_to(Path(settings.ARCHIVE_ROOT).resolve()).as_posix()


def partition_day(part: str) -> date:
    """The day of a partition named ..._pYYYYMMDD."""
    return datetime.strptime(part.rsplit("_p", 1)[1], "%Y%m%d").date()


def parse_day(value: str) -> date:
    """A YYYY-MM-DD from a URL, or a 400 naming `day`."""
    try:
        if not DAY_RE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ApplicationError(
            "The day must be a date like 2025-01-31.",
            code="invalid",
            fields={"day": ["Expected YYYY-MM-DD."]},
        ) from None


# --- reading the table ------------------------------------------------------------


def _columns(schema: str, group_id: int) -> list[_Column]:
    """The log table's columns as they are now (the table gains columns over time)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname, t.typname FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [f'"{schema}"."{tables.table_name(group_id)}"'],
        )
        rows = cursor.fetchall()
    return [
        _Column(name, ARROW_TYPES.get(kind, pa.string()), kind not in ARROW_TYPES)
        for name, kind in rows
    ]


def _arrow_schema(columns: list[_Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow) for c in columns])


_ROW_HASH = sql.SQL("hashtextextended(t::text, 0)")


def _fingerprint(schema: str, part: str) -> tuple[int, int]:
    """(row count, sum of row hashes) of a partition: changes if any row does."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*), COALESCE(sum({}), 0) FROM {} t").format(
                _ROW_HASH, sql.Identifier(schema, part)
            )
        )
        count, digest = cursor.fetchone()
    return int(count), int(digest)


def _row_batches(
    schema: str, part: str, columns: list[_Column], digest: list[int]
) -> Generator[pa.RecordBatch, None, None]:
    """The partition's rows in time order, in Arrow batches, from one statement
    (one snapshot) on a server-side cursor. Adds each row's hash to `digest[0]`."""
    select = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c.name))
        if c.as_text
        else sql.Identifier(c.name)
        for c in columns
    )
    query = sql.SQL("SELECT {}, {} FROM {} t ORDER BY ts, request_id").format(
        select, _ROW_HASH, sql.Identifier(schema, part)
    )
    schema_ = _arrow_schema(columns)
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(query)
        while rows := cursor.fetchmany(BATCH_ROWS):
            values = list(zip(*rows, strict=True))
            digest[0] += sum(int(h) for h in values[-1])
            arrays = [pa.array(values[i], type=c.arrow) for i, c in enumerate(columns)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema_)


# --- files ------------------------------------------------------------------------


def _temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{secrets.token_hex(6)}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_table_file(path: Path, batches: Any, schema: pa.Schema) -> int:
    """Write batches to `path` (Parquet, zstd) and fsync it; returns the row count."""
    rows = 0
    with open(path, "wb") as handle:
        with pq.ParquetWriter(handle, schema, compression="zstd") as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        handle.flush()
        os.fsync(handle.fileno())
    return rows


def _keys(table: pa.Table) -> pa.ChunkedArray:
    """(request_id, ts) of each row as one string: the log's primary key."""
    ts = pc.cast(pc.cast(table["ts"], pa.int64()), pa.string())
    return pc.binary_join_element_wise(table["request_id"], ts, "|")


def file_sha256(handle: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _check_existing(final: Path, record: InferenceArchive | None) -> pa.Table | None:
    """The rows already archived for this day, after checking the file is intact;
    refuses (never overwrites) a file that is missing, altered or unreadable."""
    if record is not None:
        if not final.exists():
            raise ArchiveError(
                f"{final} is recorded with {record.rows} rows but is missing; "
                "restore it before archiving more rows for this day."
            )
        with open(final, "rb") as handle:
            sha, _ = file_sha256(handle)
        if sha != record.sha256:
            raise ArchiveError(f"{final} changed on disk since it was archived.")
    if not final.exists():
        return None
    try:
        return pq.read_table(final)
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(
            f"{final} exists but is not a readable Parquet file ({exc}); move it "
            "away to archive this day again."
        ) from exc


def _write_archive(
    *,
    schema: str,
    part: str,
    columns: list[_Column],
    final: Path,
    record: InferenceArchive | None,
) -> _Written:
    """Export the partition into `final` (atomically), merged with the rows already
    archived for that day. A file that already holds exactly these rows is kept."""
    existing = _check_existing(final, record)
    arrow_schema = _arrow_schema(columns)
    digest = [0]
    temp = _temp_path(final)
    try:
        # closing(): a failed write ends the export's transaction block right here.
        with closing(_row_batches(schema, part, columns, digest)) as batches:
            count = _write_table_file(temp, batches, arrow_schema)
        if existing is None:
            file_rows, reused = count, False
        else:
            fresh = pq.read_table(temp)
            earlier = existing.filter(
                pc.invert(
                    pc.is_in(_keys(existing), value_set=_keys(fresh).combine_chunks())
                )
            )
            if earlier.num_rows == 0 and existing.equals(fresh):
                temp.unlink()
                return _Written(count, digest[0], count, True)
            merged = pa.concat_tables([fresh, earlier], promote_options="default")
            merged = merged.sort_by([("ts", "ascending"), ("request_id", "ascending")])
            file_rows = _write_table_file(
                temp, merged.to_batches(max_chunksize=BATCH_ROWS), merged.schema
            )
            reused = False
        os.replace(temp, final)
        _fsync_dir(final.parent)
    finally:
        temp.unlink(missing_ok=True)
    return _Written(count, digest[0], file_rows, reused)


def _verify_file(final: Path, expected_rows: int) -> tuple[str, int]:
    """Re-read the whole file (every page decoded) and check its row count;
    returns (sha256, bytes)."""
    with pq.ParquetFile(final) as parquet:
        decoded = sum(b.num_rows for b in parquet.iter_batches(BATCH_ROWS))
        declared = parquet.metadata.num_rows
    if decoded != expected_rows or declared != expected_rows:
        raise ArchiveError(
            f"{final} holds {decoded} rows, expected {expected_rows}; partition kept."
        )
    with open(final, "rb") as handle:
        return file_sha256(handle)


# --- the service ------------------------------------------------------------------


def _due_partitions(group: ModelGroup, today: date) -> list[tuple[str, date]]:
    cutoff = today - timedelta(days=retention_days_for(group))
    due = []
    for part in tables.partitions(group.pk):
        day = partition_day(part)
        if day < cutoff:
            due.append((part, day))
    return due


def _archive_partition(
    *, schema: str, group: ModelGroup, part: str, day: date
) -> ArchiveResult:
    final = archive_path(schema, group.pk, day)
    final.parent.mkdir(parents=True, exist_ok=True)
    columns = _columns(schema, group.pk)
    record = InferenceArchive.objects.filter(group=group, day=day).first()
    written = _write_archive(
        schema=schema, part=part, columns=columns, final=final, record=record
    )
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            written, sha, size = _verify_and_drop(
                schema=schema,
                group=group,
                part=part,
                day=day,
                columns=columns,
                final=final,
                written=written,
            )
            break
        except OperationalError as exc:
            # A long query on the table holds the lock we need: give up the place in
            # the lock queue (traffic waits behind it) and try again shortly.
            if attempt == LOCK_ATTEMPTS or not isinstance(exc.__cause__, _RETRYABLE):
                raise
            logger.warning("retention of %s waits for a lock (%s)", part, exc)
            time.sleep(LOCK_RETRY_SECONDS * attempt)
    logger.info(
        "archived %s: %s rows to %s (%s rows in file)",
        part,
        written.partition_rows,
        final,
        written.file_rows,
    )
    return ArchiveResult(
        schema=schema,
        group_id=group.pk,
        group_slug=group.slug,
        day=day,
        partition=part,
        action="archived",
        rows=written.partition_rows,
        file_rows=written.file_rows,
        path=_relative(final),
        bytes=size,
        sha256=sha,
        reused=written.reused,
    )


@transaction.atomic
def _verify_and_drop(
    *,
    schema: str,
    group: ModelGroup,
    part: str,
    day: date,
    columns: list[_Column],
    final: Path,
    written: _Written,
) -> tuple[_Written, str, int]:
    """Lock the partition, check the file holds exactly its rows, drop it and record
    the archive, all in one transaction. Returns (written, sha256, bytes)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(schema, part)
            )
        )
    count, digest = _fingerprint(schema, part)
    if (count, digest) != (written.partition_rows, written.digest):
        # Something reached the partition after the export; nothing can now.
        logger.info("partition %s changed during export; exporting again", part)
        record = InferenceArchive.objects.filter(group=group, day=day).first()
        written = _write_archive(
            schema=schema, part=part, columns=columns, final=final, record=record
        )
    if written.partition_rows != count:
        raise ArchiveError(
            f"{part} has {count} rows but {written.partition_rows} were archived."
        )
    sha, size = _verify_file(final, written.file_rows)
    tables.drop_partition(group.pk, part)
    InferenceArchive.objects.update_or_create(
        group=group,
        day=day,
        defaults={
            "path": _relative(final),
            "rows": written.file_rows,
            "bytes": size,
            "sha256": sha,
        },
    )
    return written, sha, size


def _advisory_key(schema: str, group_id: int) -> str:
    return f"modelhub:retention:{schema}:{group_id}"


def apply_retention(
    *, group: ModelGroup, today: date | None = None, dry_run: bool = False
) -> list[ArchiveResult]:
    """Archive to Parquet, verify and drop every day partition of the group older
    than its retention (day < today - retention days). A dry run only reports.
    A partition that fails is reported (`action="failed"`) and kept."""
    schema = assert_tenant_schema()
    today = today or datetime.now(UTC).date()
    if not tables.table_exists(group.pk):
        return []
    due = _due_partitions(group, today)
    if dry_run:
        return [_dry_run_result(schema, group, part, day) for part, day in due]
    if not due:
        return []
    key = _advisory_key(schema, group.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        if not cursor.fetchone()[0]:
            raise ArchiveError(
                f"Retention is already running for group '{group.slug}'.",
                code="retention_busy",
            )
    results = []
    try:
        for part, day in due:
            try:
                results.append(
                    _archive_partition(schema=schema, group=group, part=part, day=day)
                )
            except Exception as exc:
                logger.exception("archiving %s failed; partition kept", part)
                results.append(
                    ArchiveResult(
                        schema=schema,
                        group_id=group.pk,
                        group_slug=group.slug,
                        day=day,
                        partition=part,
                        action="failed",
                        rows=0,
                        file_rows=0,
                        path=_relative(archive_path(schema, group.pk, day)),
                        error=str(exc) or type(exc).__name__,
                    )
                )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
    return results


def _dry_run_result(
    schema: str, group: ModelGroup, part: str, day: date
) -> ArchiveResult:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, part))
        )
        rows = int(cursor.fetchone()[0])
    final = archive_path(schema, group.pk, day)
    earlier = (
        InferenceArchive.objects.filter(group=group, day=day)
        .values_list("rows", flat=True)
        .first()
    )
    return ArchiveResult(
        schema=schema,
        group_id=group.pk,
        group_slug=group.slug,
        day=day,
        partition=part,
        action="would_archive",
        rows=rows,
        file_rows=rows + (earlier or 0),
        path=_relative(final),
        reused=final.exists(),
    )


def apply_retention_tenant(
    *,
    today: date | None = None,
    dry_run: bool = False,
    group_slug: str | None = None,
) -> list[ArchiveResult]:
    """Retention for every group of the current tenant that has an inference table
    (or just `group_slug`). A group that cannot run is reported, the others go on."""
    schema = assert_tenant_schema()
    groups = ModelGroup.objects.filter(inference_table__isnull=False).order_by("pk")
    if group_slug is not None:
        groups = groups.filter(slug=group_slug)
        if not groups.exists():
            raise NotFoundError(f"No group '{group_slug}' with an inference table.")
    results: list[ArchiveResult] = []
    for group in groups:
        try:
            results += apply_retention(group=group, today=today, dry_run=dry_run)
        except ArchiveError as exc:
            logger.warning("retention skipped for %s: %s", group.slug, exc)
            results.append(
                ArchiveResult(
                    schema=schema,
                    group_id=group.pk,
                    group_slug=group.slug,
                    day=today or datetime.now(UTC).date(),
                    partition="",
                    action="failed",
                    rows=0,
                    file_rows=0,
                    path="",
                    error=exc.message,
                )
            )
    return results


# --- reads ------------------------------------------------------------------------


def archive_list(*, group: ModelGroup) -> QuerySet[InferenceArchive]:
    """The group's archived days, newest first."""
    return InferenceArchive.objects.filter(group=group).order_by("-day")


def archive_get(*, group: ModelGroup, day: date) -> InferenceArchive:
    archive = InferenceArchive.objects.filter(group=group, day=day).first()
    if archive is None:
        raise NotFoundError(f"No archive of group '{group.slug}' for {day:%Y-%m-%d}.")
    return archive


def archive_open_verified(archive: InferenceArchive) -> BinaryIO:
    """The archive's file, opened and checked against its recorded sha256, rewound.
    The path is rebuilt from the current schema, the group id and the day."""
    path = archive_path(assert_tenant_schema(), archive.group_id, archive.day)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the response closes it
    except FileNotFoundError:
        raise ArchiveError(
            f"The archive file for {archive.day:%Y-%m-%d} is missing.",
            code="archive_missing",
        ) from None
    sha, size = file_sha256(handle)
    if sha != archive.sha256 or size != archive.bytes:
        handle.close()
        raise ArchiveError(
            f"The archive file for {archive.day:%Y-%m-%d} changed on disk.",
            code="archive_tampered",
        )
    handle.seek(0)
    return handle
