"""The spool mode of the inference log (apps/inference/spool.py): rows reach their
tables exactly as the direct mode writes them, a dead process's file is replayed once,
and a row PostgreSQL refuses is kept aside, never dropped with its batch.

The drain uses a connection of its own, so these tests work in a committed tenant of
their own instead of the test's transaction."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from apps.core.context import new_request_id
from apps.core.db import libpq_params
from apps.inference import spool as spool_module
from apps.inference.spool import RELAY, Spool, copy_text, encode_line
from apps.inference.writer import FIELDS, feedback_write, log_write, row_values
from apps.tenants.demo import seed_demo_content
from apps.tenants.models import Organization
from apps.tenants.services import tenant_create, tenant_delete
from tests.servers import until

SCHEMA = "spooled"


@contextmanager
def _tenant() -> Iterator[None]:
    """The tenant as a request sees it (the organisation, not only its schema)."""
    with tenant_context(Organization.objects.get(schema_name=SCHEMA)):
        yield


def _tenant_id() -> int:
    return Organization.objects.get(schema_name=SCHEMA).pk


def _line(group: Any, row: dict[str, Any], *, group_id: int | None = None) -> bytes:
    return encode_line(SCHEMA, _tenant_id(), group_id or group.pk, row_values(row))


@pytest.fixture(scope="module")
def group(django_db_setup, django_db_blocker, trained):  # type: ignore[no-untyped-def]
    with django_db_blocker.unblock():
        tenant_create(
            slug=SCHEMA, name="Spooled", admin_email="a@spooled.test", domains=[]
        )
        try:
            with schema_context(SCHEMA):
                yield seed_demo_content(actor="test")
        finally:
            tenant_delete(slug=SCHEMA)


@pytest.fixture
def spool(tmp_path: Path, settings, django_db_blocker) -> Iterator[Spool]:  # type: ignore[no-untyped-def]
    settings.INFERENCE_LOG_MODE = "spool"
    settings.INFERENCE_SPOOL_LINGER_MS = 0
    own = Spool(tmp_path)
    spool_module._spool = own
    with django_db_blocker.unblock():
        own.start()  # as a gunicorn worker does when it boots
        yield own
        own.stop()
    spool_module._spool = None


def _row(group: Any, **fields: Any) -> dict[str, Any]:
    member = group.members.first()
    return {
        "request_id": new_request_id(),
        "member_id": member.pk,
        "version_id": member.version_id,
        "status": "ok",
        "latency_ms": 1.5,
        **fields,
    }


def _stored(
    group: Any, request_ids: list[str], *, group_id: int | None = None
) -> dict[str, tuple[Any, ...]]:
    """The rows of these ids in the group's table (or in the table of `group_id`)."""
    columns = ", ".join(f for f in FIELDS if f != "request_id")
    table = f"inference_log_g{group_id or group.pk}"
    with schema_context(SCHEMA), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT request_id::text, {columns} FROM {table} "
            "WHERE request_id = ANY(%s::uuid[])",
            [request_ids],
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


TRICKY = {
    "prompt": 'tab\there, newline\nthere, back\\slash, "quotes", NUL\x00, ünï ✓ 日本',
    "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
    "big": 12345678901234567890,
    "nan": float("nan"),
}


def test_a_spooled_row_is_stored_as_the_direct_mode_stores_it(
    group, spool, settings, django_db_blocker
):
    fields = {
        "input": TRICKY,
        "output": {"text": "line\r\nend\\", "score": 0.25},
        "routing_key": "key\twith\\odd\nchars",
        "error_code": None,
        "error_message": "NUL \x00 here",
        "explanation": {"values": [0.1, -0.2], "base": 0.5},
        "client_request_id": None,
        "shadow": True,
    }
    with django_db_blocker.unblock(), _tenant():
        spooled_row = _row(group, **fields)
        assert log_write(group.pk, spooled_row) is True
        settings.INFERENCE_LOG_MODE = "direct"
        direct_row = _row(group, **fields)
        assert log_write(group.pk, direct_row) is False
        spool.flush()
        stored = _stored(group, [spooled_row["request_id"], direct_row["request_id"]])

    assert len(stored) == 2
    spooled, direct = (
        stored[spooled_row["request_id"]],
        stored[direct_row["request_id"]],
    )
    ts = FIELDS.index("ts") - 1
    assert spooled[:ts] + spooled[ts + 1 :] == direct[:ts] + direct[ts + 1 :]
    assert json.loads(spooled[FIELDS.index("input") - 1])["nan"] == "NaN"
    assert spooled[FIELDS.index("routing_key") - 1] == "key\twith\\odd\nchars"
    assert spooled[FIELDS.index("error_message") - 1] == "NUL \ufffd here"


def test_a_dead_processs_file_is_replayed_once(group, spool, django_db_blocker):
    with django_db_blocker.unblock(), _tenant():
        rows = [_row(group, input={"n": n}) for n in range(5)]
        lines = [_line(group, row) for row in rows]
        # A process that died after writing its file and committing the first two
        # rows, before it recorded how far it had drained.
        orphan = spool.directory / f"gone.1.1{spool_module.SUFFIX}"
        orphan.write_bytes(b"".join(lines))
        first = Spool(spool.directory)
        first_file = spool_module._lock_orphan(orphan)
        assert first_file is not None
        first._write(lines[:2], first_file)
        first_file.close()  # it dies: the lock goes, the offset file never came

        replayed = spool.adopt()
        stored = _stored(group, [row["request_id"] for row in rows])

    assert replayed == 3  # the three missing rows; the two already in stay single
    assert sorted(
        json.loads(v[FIELDS.index("input") - 1])["n"] for v in stored.values()
    ) == [0, 1, 2, 3, 4]
    assert not orphan.exists() and not Path(f"{orphan}.offset").exists()


def test_a_live_processs_file_is_left_alone(group, spool, django_db_blocker):
    with django_db_blocker.unblock(), _tenant():
        other = Spool(spool.directory)  # another live process; not started: no drain
        row = _row(group)
        other.append(_line(group, row))

        assert spool.adopt() == 0
        assert other.own is not None and other.own.path.exists()
        assert _stored(group, [row["request_id"]]) == {}

        other.flush()
        assert list(_stored(group, [row["request_id"]])) == [row["request_id"]]


def test_a_row_postgresql_refuses_is_kept_aside_and_its_batch_written(
    group, spool, django_db_blocker
):
    with django_db_blocker.unblock(), _tenant():
        good = [_row(group) for _ in range(3)]
        lines = [_line(group, row) for row in good]
        lines.insert(1, _line(group, _row(group), group_id=999999))  # no table
        bad_json = row_values(_row(group))
        bad_json[FIELDS.index("input")] = '{"lone": "\\ud800"}'  # jsonb refuses it
        lines.insert(3, encode_line(SCHEMA, _tenant_id(), group.pk, bad_json))
        for line in lines:
            spool.append(line)
        spool.flush()
        stored = _stored(group, [row["request_id"] for row in good])

    assert len(stored) == 3
    kept = spool.directory / "rejected" / spool.own.path.name
    assert kept.stat().st_mode & 0o777 == 0o600  # inputs and outputs: owner only
    assert spool.own.path.stat().st_mode & 0o777 == 0o600
    rejected = kept.read_text()
    assert rejected.count("# ") == 2
    assert "inference_log_g999999" in rejected and "\\\\ud800" in rejected


def test_feedback_waits_briefly_for_a_row_still_in_the_spool(
    group, spool, settings, django_db_blocker
):
    settings.INFERENCE_SPOOL_LINGER_MS = 300  # the drain is slower than the feedback
    with django_db_blocker.unblock(), _tenant():
        row = _row(group)
        log_write(group.pk, row)
        result = feedback_write(
            group.pk, [{"request_id": row["request_id"], "label": 1}]
        )
        old = feedback_write(
            group.pk,
            [{"request_id": "0190a8c2-7a1e-7cc2-9a64-1a2b3c4d5e6f", "label": 1}],
        )

    assert result["updated"] == 1 and result["unknown"] == []
    assert old["unknown"] == ["0190a8c2-7a1e-7cc2-9a64-1a2b3c4d5e6f"]  # not waited for


def test_sampled_rows_queue_their_explanations_once_in_the_table(
    group, spool, django_db_blocker, monkeypatch
):
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "apps.core.tasks.tenant_async",
        lambda *args, **kwargs: queued.append((*args, kwargs["schema_name"])),
    )
    with django_db_blocker.unblock(), _tenant():
        log_write(group.pk, _row(group))
        spool.flush()
        assert queued == []
        log_write(group.pk, _row(group, explain_requested=True))
        spool.flush()

    assert queued == [("apps.inference.tasks.explain_pending", group.pk, SCHEMA)]


def test_the_command_replays_what_dead_processes_left(group, spool, django_db_blocker):
    with django_db_blocker.unblock(), _tenant():
        rows = [_row(group) for _ in range(3)]
        orphan = spool.directory / f"gone.2.2{spool_module.SUFFIX}"
        orphan.write_bytes(b"".join(_line(group, row) for row in rows))
        out, err = StringIO(), StringIO()
        call_command(
            "drain_inference_spool", dir=str(spool.directory), stdout=out, stderr=err
        )
        stored = _stored(group, [row["request_id"] for row in rows])

    assert len(stored) == 3 and not orphan.exists()
    assert out.getvalue() == "replayed 3 row(s); 0 file(s) of live processes\n"
    assert err.getvalue() == ""


def test_copy_text_escapes():
    assert copy_text(None) == "\\N"
    assert (copy_text(True), copy_text(False)) == ("t", "f")
    assert copy_text("a\tb\nc\\d\re\x00") == "a\\tb\\nc\\\\d\\re\ufffd"
    when = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    assert copy_text(when) == "2026-01-02T03:04:05.600000+00:00"


@pytest.mark.parametrize(
    "values",
    [
        ["plain", 1, 2.5, None, True, False, datetime(2026, 1, 2, tzinfo=UTC)],
        [None, None, "x"],
        ["tab\there", None],
        ["a\\b", None, None],  # a backslash: one more than the NULLs' own
        ["\\N", "text"],  # the text \N is not a NULL
        ["line\nbreak"],
        ["carriage\rreturn"],
        ["nul\x00here"],
        ["ünïcödé ✓", '{"k":"v"}', 12345678901234567890, float("nan")],
        [],
    ],
)
def test_encode_line_is_copy_text_of_every_value(values):
    expected = "\t".join(["s", "7", "9", *map(copy_text, values)]) + "\n"
    carrying = "\t".join(["s", "7", "9", "u1,x;2,y", *map(copy_text, values)]) + "\n"

    assert encode_line("s", 7, 9, values) == expected.encode()
    assert encode_line("s", 7, 9, values, ["1,x", "2,y"]) == carrying.encode()


def test_metrics_show_this_hosts_backlog_to_the_operator_only(
    group, spool, settings, django_db_blocker
):
    from apps.core.metrics import DatabaseCollector

    settings.INFERENCE_SPOOL_DIR = str(spool.directory)
    with django_db_blocker.unblock(), _tenant():
        lines = [_line(group, _row(group)) for _ in range(2)]
    (spool.directory / f"gone.3.3{spool_module.SUFFIX}").write_bytes(b"".join(lines))
    (spool.directory / "rejected").mkdir()
    (spool.directory / "rejected" / f"gone.4.4{spool_module.SUFFIX}").write_bytes(
        b"# relation does not exist\n" + lines[0]
    )

    def gauges(tenant: str | None) -> dict[str, float]:
        return {
            family.name: family.samples[0].value
            for family in DatabaseCollector(tenant)._spool()
        }

    assert gauges(None) == {
        "modelhub_inference_spool_files": 1,
        "modelhub_inference_spool_backlog_bytes": len(b"".join(lines)),
        "modelhub_inference_spool_held_files": 0,
        "modelhub_inference_spool_refused_rows": 1,
    }
    assert gauges(SCHEMA) == {}  # a tenant's scrape: the spool mixes tenants


def test_a_started_spool_replays_orphans_without_any_row_of_its_own(
    group, spool, settings, django_db_blocker
):
    settings.INFERENCE_SPOOL_ADOPT_SECONDS = 0.1  # gunicorn workers start it at boot
    with django_db_blocker.unblock(), _tenant():
        row = _row(group)
        orphan = spool.directory / f"gone.5.5{spool_module.SUFFIX}"
        orphan.write_bytes(_line(group, row))
        spool.start()
        deadline = time.monotonic() + 10
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = _stored(group, [row["request_id"]])

    assert list(stored) == [row["request_id"]] and not orphan.exists()


def test_waiting_for_spooled_rows_costs_one_query_per_round(
    group, spool, django_db_blocker
):
    """Fresh ids that never come (never logged) are waited for together: the wait
    is bounded in time and its queries do not multiply with the batch."""
    from django.test.utils import CaptureQueriesContext

    from apps.inference.writer import SPOOL_POLL_SECONDS, SPOOL_VISIBLE_SECONDS

    ids = [new_request_id() for _ in range(20)]
    with django_db_blocker.unblock(), _tenant():
        started = time.monotonic()
        with CaptureQueriesContext(connection) as queries:
            report = feedback_write(
                group.pk, [{"request_id": i, "label": 1} for i in ids]
            )
        took = time.monotonic() - started

    assert report["unknown"] == ids and report["updated"] == 0
    assert took < SPOOL_VISIBLE_SECONDS + 0.5
    rounds = SPOOL_VISIBLE_SECONDS / SPOOL_POLL_SECONDS
    assert len(queries) <= len(ids) + rounds + 5  # not len(ids) x rounds


def test_rows_wait_in_the_file_while_postgresql_is_unreachable(
    group, spool, django_db_blocker, monkeypatch
):
    import psycopg

    real = Spool._connection
    failures = {"left": 3}

    def unreachable(self):  # type: ignore[no-untyped-def]
        if failures["left"] > 0:
            failures["left"] -= 1
            raise psycopg.OperationalError("connection refused (test)")
        return real(self)

    monkeypatch.setattr(Spool, "_connection", unreachable)
    with django_db_blocker.unblock(), _tenant():
        rows = [_row(group) for _ in range(3)]
        for row in rows:
            log_write(group.pk, row)  # answered at once: the database is not asked
        spool.flush(timeout=20)
        stored = _stored(group, [row["request_id"] for row in rows])

    assert failures["left"] == 0 and len(stored) == 3
    assert not (spool.directory / "rejected").exists()


def test_lines_of_another_organisation_or_format_are_kept_aside(
    group, spool, django_db_blocker
):
    """A schema whose organisation was deleted and whose slug was taken again must
    not receive the old organisation's rows; nor is a line of another format read."""
    with django_db_blocker.unblock(), _tenant():
        good, stale = _row(group), _row(group)
        values = row_values(stale)
        spool.append(_line(group, good))
        spool.append(encode_line(SCHEMA, _tenant_id() + 1000, group.pk, values))
        spool.append(b"spooled\t1\t1\tonly\tthree\tfields\n")
        spool.flush()
        stored = _stored(group, [good["request_id"], stale["request_id"]])

    assert list(stored) == [good["request_id"]]
    assert spool.own is not None
    rejected = (spool.directory / "rejected" / spool.own.path.name).read_text()
    assert "no longer belongs to organisation" in rejected
    assert "not a spool line of this version" in rejected


def test_a_line_longer_than_a_batch_is_kept_whole_and_the_rest_written(
    group, spool, django_db_blocker, monkeypatch
):
    monkeypatch.setattr(spool_module, "BATCH_BYTES", 4096)
    with django_db_blocker.unblock(), _tenant():
        before, after = _row(group), _row(group)
        huge = _line(group, _row(group, input={"text": "x" * 10_000}))
        spool.append(_line(group, before))
        spool.append(huge)
        spool.append(_line(group, after))
        spool.flush()
        stored = _stored(group, [before["request_id"], after["request_id"]])

    assert len(stored) == 2
    assert spool.own is not None
    kept = (spool.directory / "rejected" / spool.own.path.name).read_bytes()
    assert kept == b"# a line longer than a batch\n" + huge


def test_a_process_whose_spool_is_not_started_logs_directly(
    group, tmp_path, settings, django_db_blocker
):
    """The background worker and commands never start a spool: nothing of theirs
    can be left in a file when they end without their exit handlers."""
    settings.INFERENCE_LOG_MODE = "spool"
    spool_module._spool = Spool(tmp_path)  # created, not started
    try:
        with django_db_blocker.unblock(), _tenant():
            row = _row(group)
            assert log_write(group.pk, row) is False
            assert list(_stored(group, [row["request_id"]])) == [row["request_id"]]
    finally:
        spool_module._spool = None
    assert not list(tmp_path.iterdir())


def test_a_bare_schema_without_its_organisation_logs_directly(
    group, spool, django_db_blocker
):
    """A line names its organisation; code that only switched the schema
    (schema_context) has none to name, so its rows are committed directly."""
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        row = _row(group)
        assert log_write(group.pk, row) is False
        assert list(_stored(group, [row["request_id"]])) == [row["request_id"]]


def test_a_drained_file_is_retired_for_a_new_one_and_removed(
    group, spool, django_db_blocker, monkeypatch
):
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 500)
    with django_db_blocker.unblock(), _tenant():
        rows = [_row(group) for _ in range(6)]
        files = []
        for row in rows:
            log_write(group.pk, row)
            assert spool.own is not None
            files.append(spool.own.path)
            spool.flush()
        stored = _stored(group, [row["request_id"] for row in rows])

    assert len(stored) == 6
    assert len(set(files)) > 1  # it rotated
    left = sorted(spool.directory.glob("*.spool"))
    assert left == ([spool.own.path] if spool.own else [])  # the retired ones are gone
    assert not spool.retiring


def test_two_different_rows_under_one_request_id_are_both_kept(
    group, spool, django_db_blocker
):
    """Not a replay: the second row (a caller's repeated X-Request-ID) gets a fresh
    id of the same millisecond naming the first, as the direct mode gives it."""
    from apps.inference.writer import uuid7_time

    with django_db_blocker.unblock(), _tenant():
        first = _row(group, latency_ms=1.5)
        second = {**first, "latency_ms": 2.5}
        log_write(group.pk, first)
        spool.flush()
        log_write(group.pk, second)
        spool.flush()
        assert spool.own is not None  # a replay of both lines: nothing more
        assert spool._write([_line(group, first), _line(group, second)], spool.own) == 0
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT request_id::text, client_request_id, latency_ms "
                f"FROM inference_log_g{group.pk} "
                "WHERE request_id = %s OR client_request_id = %s ORDER BY latency_ms",
                [first["request_id"], first["request_id"]],
            )
            rows = cursor.fetchall()

    assert [(r[1], r[2]) for r in rows] == [(None, 1.5), (first["request_id"], 2.5)]
    fresh = rows[1][0]
    assert fresh != first["request_id"]
    assert uuid7_time(fresh) == uuid7_time(first["request_id"])  # same partition, ts


def test_a_rekeyed_row_that_names_its_own_client_id_is_not_written_again(
    group, spool, django_db_blocker
):
    """An OIP caller's body id is the row's client_request_id: the re-keyed row keeps
    it, and its replay must still be recognised (its new id is derived from it)."""
    with django_db_blocker.unblock(), _tenant():
        first = _row(group, latency_ms=1.5, client_request_id="req-1")
        second = {**first, "latency_ms": 2.5}
        log_write(group.pk, first)
        spool.flush()
        log_write(group.pk, second)
        spool.flush()
        assert spool.own is not None  # the batch of the second, replayed twice
        for _ in range(2):
            assert spool._write([_line(group, second)], spool.own) == 0
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM inference_log_g{group.pk} "
                "WHERE client_request_id = 'req-1'"
            )
            count = cursor.fetchone()[0]

    assert count == 2


def test_a_drain_told_of_more_than_the_file_holds_stops(tmp_path, monkeypatch):
    """An end beyond the file (a new file read with its predecessor's length) must
    not spin: the drain stops at what the file holds."""
    monkeypatch.setattr(spool_module, "BATCH_BYTES", 64)
    path = tmp_path / f"short{spool_module.SUFFIX}"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    short = spool_module._File(path, fd)
    try:
        started = time.monotonic()
        assert Spool(tmp_path)._drain_file(short, 10 * 64) == 0
        assert time.monotonic() - started < 1 and short.offset == 0
    finally:
        short.close()


@contextmanager
def _second_table(group: Any, offset: int = 1000) -> Iterator[int]:
    """Another group's log table in the same schema, dropped afterwards."""
    from apps.inference.tables import provision

    other = group.pk + offset
    with schema_context(SCHEMA):
        provision(other)
    try:
        yield other
    finally:
        with schema_context(SCHEMA), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS inference_log_g{other} CASCADE")


def _rename_column(group_id: int, old: str, new: str) -> None:
    with schema_context(SCHEMA), connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE inference_log_g{group_id} RENAME COLUMN {old} TO {new}"
        )


def _pause_drain(spool: Spool) -> None:
    """Stop the drain thread, so that the test's own drain and retry calls are the
    only ones (flush drains by itself); `spool.start()` starts it again."""
    spool.stopping = True
    spool.wake.set()
    assert spool.thread is not None
    spool.thread.join(timeout=10)
    spool.stopping = False


def test_a_table_that_refuses_every_row_holds_up_no_other(
    group, spool, django_db_blocker
):
    """A column missing from one table (an old table, a deploy half done) stalls
    that table only: its rows wait in a held file of their own, the other tables'
    rows are written, and the held rows follow once the table is mended."""
    _pause_drain(spool)
    with django_db_blocker.unblock(), _tenant(), _second_table(group) as broken:
        _rename_column(broken, "door", "door_old")
        first = [_row(group) for _ in range(4)]
        for n, row in enumerate(first):
            spool.append(_line(group, row, group_id=broken if n % 2 else None))
        spool.flush()
        held = spool.held[(SCHEMA, _tenant_id(), broken)]
        assert held.failures == 1
        # Later rows of the stalled table join the held file, not asked again.
        later = _row(group)
        spool.append(_line(group, later, group_id=broken))
        spool.flush()
        assert held.failures == 1
        assert (
            len(_stored(group, [first[0]["request_id"], first[2]["request_id"]])) == 2
        )
        assert held.file.path.name.endswith(f".{SCHEMA}.g{broken}.held.spool")
        assert held.file.path.stat().st_mode & 0o777 == 0o600
        assert spool_module.backlog(spool.directory).held_files == 1

        assert spool.retry_held(now=held.retry_at) == 0  # still missing
        assert held.failures == 2 and held.file.path.exists()

        _rename_column(broken, "door_old", "door")
        assert spool.retry_held(now=held.retry_at) == 3
        wanted = [first[1]["request_id"], first[3]["request_id"], later["request_id"]]
        landed = _stored(group, wanted, group_id=broken)

    assert sorted(landed) == sorted(wanted)
    assert not spool.held and not held.file.path.exists()
    assert not (spool.directory / "rejected").exists()


def test_a_table_locked_past_the_lock_timeout_holds_up_no_other(
    group, spool, django_db_blocker, monkeypatch
):
    """A long DDL on one tenant's table (its lock held) stalls that table only."""
    import psycopg

    monkeypatch.setattr(spool_module, "LOCK_TIMEOUT_MS", 200)
    _pause_drain(spool)
    with spool.draining:
        spool._disconnect()  # the next connection takes the patched timeout
    with django_db_blocker.unblock(), _tenant(), _second_table(group) as locked:
        rows = [_row(group) for _ in range(4)]
        with psycopg.connect(**libpq_params()) as other:  # a transaction, until closed
            other.execute(
                f"LOCK TABLE {SCHEMA}.inference_log_g{locked} IN ACCESS EXCLUSIVE MODE"
            )
            for n, row in enumerate(rows):
                spool.append(_line(group, row, group_id=locked if n % 2 else None))
            spool.flush()
            held = spool.held[(SCHEMA, _tenant_id(), locked)]
            others = _stored(group, [rows[0]["request_id"], rows[2]["request_id"]])

            assert len(others) == 2  # the other table's rows did not wait
            assert "lock timeout" in held.error
        # The drain's connection also gives up on a server gone from the network.
        bounds = spool._connection().info.get_parameters()
        assert bounds["tcp_user_timeout"] == "30000" and bounds["keepalives"] == "1"
        assert spool.retry_held(now=held.retry_at) == 2  # the lock is gone
        wanted = [rows[1]["request_id"], rows[3]["request_id"]]
        landed = _stored(group, wanted, group_id=locked)

    assert sorted(landed) == sorted(wanted)
    assert not spool.held and not (spool.directory / "rejected").exists()


def _dead_process_holding(
    spool: Spool, group: Any, broken: int, rows: list[dict[str, Any]]
) -> Path:
    """Another process of the host held these rows for the broken table, then died
    (its locks go with it); returns its held file."""
    gone = Spool(spool.directory)
    for row in rows:
        gone.append(_line(group, row, group_id=broken))
    gone.drain()
    held_path = gone.held[(SCHEMA, _tenant_id(), broken)].file.path
    gone._disconnect()
    assert gone.own is not None
    for f in (gone.own, *[h.file for h in gone.held.values()]):
        f.close()
    return held_path


def test_a_dead_processs_held_rows_are_adopted_and_retried_by_the_drain(
    group, spool, django_db_blocker, monkeypatch
):
    monkeypatch.setattr(spool_module, "HOLD_RETRY_MAX_SECONDS", 0.05)
    with django_db_blocker.unblock(), _tenant(), _second_table(group) as broken:
        _rename_column(broken, "door", "door_old")
        _pause_drain(spool)
        rows = [_row(group) for _ in range(2)]
        held_path = _dead_process_holding(spool, group, broken, rows)

        # The dead process's own file is replayed (its held rows are not in it);
        # its held file is taken over as it is, not copied, and retried in turn.
        assert spool.adopt() == 0
        assert [h.file.path for h in spool.adopted] == [held_path]
        mine = spool.adopted[0]
        assert mine.key == (SCHEMA, _tenant_id(), broken) and not spool.held
        assert spool.retry_held(now=mine.retry_at) == 0  # still broken
        assert mine.failures == 1 and held_path.exists()

        _rename_column(broken, "door_old", "door")
        spool.start()
        deadline = time.monotonic() + 10
        while spool.adopted and time.monotonic() < deadline:
            spool.wake.set()  # the drain thread's next round retries it
            time.sleep(0.05)
        landed = _stored(group, [row["request_id"] for row in rows], group_id=broken)

    assert not spool.adopted and not held_path.exists()
    assert len(landed) == 2


def test_a_failed_write_to_a_held_file_is_taken_back_and_the_back_off_bounded(
    tmp_path, monkeypatch
):
    """Half a line never stays in a held file (the disk filled mid-write: the batch
    is retried); a table broken for days is still retried every minute."""
    import psycopg

    own = Spool(tmp_path)
    key = ("spooled", 1, 2)
    error = psycopg.errors.UndefinedColumn("column door does not exist")
    own._hold(key, [b"first line\n"], error)
    held = own.held[key]

    real_write = os.write
    calls = {"n": 0}

    def disk_fills(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:5]))  # a short write, then no space
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", disk_fills)
    with pytest.raises(OSError):
        own._hold(key, [b"second line\n", b"third line\n"])
    monkeypatch.setattr(spool_module.os, "write", real_write)
    own._hold(key, [b"fourth line\n"])

    assert held.file.path.read_bytes() == b"first line\nfourth line\n"
    assert held.written == len(b"first line\nfourth line\n")

    held.failures = 5000  # 2.0 ** 5000 would overflow
    before = time.monotonic()
    own._held_again(held, error)
    assert held.retry_at - before <= spool_module.HOLD_RETRY_MAX_SECONDS + 1
    held.file.close()


def test_beyond_its_held_files_a_process_waits_as_a_whole(
    group, spool, django_db_blocker, monkeypatch
):
    """Each held file is a descriptor: past MAX_HELD_FILES a stalled table's batch
    waits and is retried as a whole (as when PostgreSQL is down), never lost."""
    import psycopg

    monkeypatch.setattr(spool_module, "MAX_HELD_FILES", 1)
    _pause_drain(spool)
    with django_db_blocker.unblock(), _tenant(), _second_table(group) as broken:
        _rename_column(broken, "door", "door_old")
        rows = [_row(group), _row(group)]
        spool.append(_line(group, rows[0], group_id=broken))
        spool.drain()
        assert len(spool.held) == 1
        with _second_table(group, offset=2000) as other:
            _rename_column(other, "door", "door_old")
            spool.append(_line(group, rows[1], group_id=other))
            with pytest.raises(psycopg.errors.UndefinedColumn):
                spool.drain()
            assert len(spool.held) == 1 and spool._pending() > 0  # waiting
            _rename_column(other, "door_old", "door")
            spool.drain()
            assert spool._pending() == 0
            stored = _stored(group, [rows[1]["request_id"]], group_id=other)
            assert list(stored) == [rows[1]["request_id"]]


def test_the_command_replays_held_files_once_their_table_is_mended(
    group, spool, django_db_blocker
):
    _pause_drain(spool)
    with django_db_blocker.unblock(), _tenant(), _second_table(group) as broken:
        _rename_column(broken, "door", "door_old")
        rows = [_row(group) for _ in range(3)]
        held_path = _dead_process_holding(spool, group, broken, rows)

        out, err = StringIO(), StringIO()
        call_command(
            "drain_inference_spool", dir=str(spool.directory), stdout=out, stderr=err
        )
        assert held_path.exists() and "1 held file(s)" in err.getvalue()  # still broken

        _rename_column(broken, "door_old", "door")
        out, err = StringIO(), StringIO()
        call_command(
            "drain_inference_spool", dir=str(spool.directory), stdout=out, stderr=err
        )
        landed = _stored(group, [row["request_id"] for row in rows], group_id=broken)

    assert out.getvalue().startswith("replayed 3 row(s)") and err.getvalue() == ""
    assert sorted(landed) == sorted(row["request_id"] for row in rows)
    assert not held_path.exists()


# --- the server's drain process (INFERENCE_SPOOL_HOST_DRAIN) ------------------------


@contextmanager
def _drain_process(directory: Path, *, stopped: bool = False) -> Iterator[Spool]:
    """The server's drain process, as a thread of this one (a spool file's lock is
    per open file, so it and the worker's Spool still exclude each other).
    `stopped`: it holds the directory's lock but copies nothing."""
    host = Spool(directory)
    if stopped:
        host.follow = lambda: 0  # type: ignore[method-assign]
        host.adopt = lambda directory=None: 0  # type: ignore[method-assign]
    thread = threading.Thread(target=host.serve_host)
    thread.start()
    try:
        yield host
    finally:
        host.stopping = True
        host.wake.set()
        thread.join(timeout=10)
        host.stop()
    assert not thread.is_alive()


@pytest.fixture
def worker(tmp_path, settings, django_db_blocker) -> Iterator[Spool]:  # type: ignore[no-untyped-def]
    """A web worker that only appends: the drain process copies its files."""
    settings.INFERENCE_LOG_MODE = "spool"
    settings.INFERENCE_SPOOL_LINGER_MS = 0
    own = Spool(tmp_path)
    own.start(relay=True)
    spool_module._spool = own
    with django_db_blocker.unblock():
        yield own
        own.stop()
    spool_module._spool = None


def test_the_drain_process_copies_a_live_workers_rows_then_removes_its_file(
    group, worker
):
    with _drain_process(worker.directory), _tenant():
        rows = [_row(group, input={"n": n}) for n in range(5)]
        assert all(log_write(group.pk, row) for row in rows)  # spooled
        worker.flush()  # waits for the drain process's record
        stored = _stored(group, [row["request_id"] for row in rows])
        assert worker.own is not None
        path = worker.own.path

        assert len(stored) == 5 and worker.thread is None  # no drain of its own
        assert RELAY in path.name and path.exists()  # its worker is alive

        worker.stop()  # at its exit it lets go of the file: copied to its end
        worker.flush()
        assert not path.exists() and not Path(f"{path}.offset").exists()


def test_a_worker_that_only_appends_rotates_by_letting_go(group, worker, monkeypatch):
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 500)
    with _drain_process(worker.directory), _tenant():
        rows = [_row(group) for _ in range(6)]
        files = set()
        for row in rows:
            log_write(group.pk, row)
            files.add(worker.own.path if worker.own else worker.released[-1])
        worker.flush()  # the files let go of are removed by then
        stored = _stored(group, [row["request_id"] for row in rows])

    assert len(stored) == 6 and len(files) > 1  # it rotated
    left = list(worker.directory.glob("*.spool"))
    assert left == ([worker.own.path] if worker.own else [])  # the others are gone


def test_a_new_drain_process_goes_on_where_the_last_one_stopped(
    group, worker, monkeypatch
):
    sent: list[bytes] = []
    write = Spool._write

    def counted(self: Spool, lines: list[bytes], *args: Any, **kwargs: Any) -> int:
        sent.extend(lines)
        return write(self, lines, *args, **kwargs)

    monkeypatch.setattr(Spool, "_write", counted)
    with _tenant():
        rows = [_row(group) for _ in range(5)]
        with _drain_process(worker.directory):
            for row in rows[:3]:
                log_write(group.pk, row)
            worker.flush()
        for row in rows[3:]:  # while no drain process runs: they wait in the file
            log_write(group.pk, row)
        time.sleep(0.1)
        assert len(_stored(group, [row["request_id"] for row in rows])) == 3
        assert len(sent) == 3

        with _drain_process(worker.directory):
            worker.flush()
            stored = _stored(group, [row["request_id"] for row in rows])

    assert len(stored) == 5
    assert len(sent) == 5  # the new one sent only the two rows after the offset


def test_one_drain_process_at_a_time(group, worker):
    with _drain_process(worker.directory) as first:
        assert until(lambda: first.host, 10)
        with _drain_process(worker.directory) as second:
            time.sleep(0.3)
            assert not second.host  # it waits for the lock
            first.stopping = True
            first.wake.set()
            assert until(
                lambda: second.host, 10
            )  # and takes over once the first is gone


def test_while_a_drain_process_runs_adopters_leave_its_files_to_it(group, spool):
    with _tenant():
        row = _row(group)
        dead = spool.directory / f"gone.1.1{RELAY}{spool_module.SUFFIX}"
        dead.write_bytes(_line(group, row))  # a worker that died: its lock is free
        with _drain_process(spool.directory, stopped=True) as host:
            assert until(lambda: host.host, 10)

            assert spool.adopt() == 0 and dead.exists()

        assert spool.adopt() == 1 and not dead.exists()  # none runs: anyone adopts
        assert list(_stored(group, [row["request_id"]])) == [row["request_id"]]


@pytest.mark.parametrize("carry", [True, False])
def test_a_provider_calls_usage_rides_in_its_rows_line_and_counts_once(
    group, spool, settings, django_db_blocker, httpserver, carry
):
    """In the spool mode a provider call sends nothing to PostgreSQL on the request
    either: its usage counter travels in the row's line, and the drain adds it in
    the row's own transaction, so a replay of the line adds nothing. With
    INFERENCE_SPOOL_CARRY_USAGE off it is committed on the request, as before."""
    from decimal import Decimal

    from apps.groups.serving import predict
    from apps.providers.models import ProviderConfig, ProviderUsage
    from tests.groups.conftest import llm_group_create, serve_chat

    settings.INFERENCE_SPOOL_LINGER_MS = 300  # time to look before the drain copies
    settings.INFERENCE_SPOOL_CARRY_USAGE = carry
    serve_chat(httpserver, "/v1/chat/completions", "hello")
    slug = f"spool-bot-{carry}".lower()
    with django_db_blocker.unblock(), _tenant():
        llm = llm_group_create(
            slug,
            [(httpserver.url_for("/v1"), "champion", 100)],
            price_per_1k_input=Decimal("2"),
            price_per_1k_output=Decimal("8"),
        )
        provider = ProviderConfig.objects.get(name=f"{slug}-0")

        def counters() -> list[tuple[Any, ...]]:
            return list(
                ProviderUsage.objects.filter(provider=provider).values_list(
                    "requests", "errors", "tokens_in", "tokens_out", "cost"
                )
            )

        result = predict(
            slug=slug,
            inputs={"messages": [{"role": "user", "content": "hi"}]},
            requester="test",
            door="openai",
        )
        assert spool.own is not None
        [line] = spool.own.path.read_bytes().splitlines(keepends=True)
        before = counters()
        spool.flush()
        spool.flush()
        counted = counters()
        assert spool._write([line], spool.own) == 0  # a replay of the line
        replayed = counters()
        stored = _stored(llm, [result.request_id])

    usage = [(1, 0, 9, 3, Decimal("0.042000"))]  # (9 * 2 + 3 * 8) / 1000
    assert before == ([] if carry else usage)  # committed on the request or not
    assert (b"\tu1," in line) is carry
    assert counted == usage
    assert replayed == counted
    assert list(stored) == [result.request_id]


def test_lines_carrying_usage_of_a_gone_provider_garbled_or_of_the_old_format(
    group, spool, django_db_blocker
):
    """A deleted provider's usage is skipped and its row written; a line whose
    carried usage does not read is kept aside; a line written before lines carried
    anything (no such field) is copied as it is."""
    with django_db_blocker.unblock(), _tenant():
        gone, garbled, old = _row(group), _row(group), _row(group)
        tenant_id = _tenant_id()
        usage = "999999,2026-11-27,0,1.5,1,1,0.010"
        spool.append(
            encode_line(SCHEMA, tenant_id, group.pk, row_values(gone), [usage])
        )
        spool.append(
            encode_line(
                SCHEMA, tenant_id, group.pk, row_values(garbled), ["1,someday,0"]
            )
        )
        fields = [SCHEMA, str(tenant_id), str(group.pk)]
        legacy = "\t".join([*fields, *map(copy_text, row_values(old))]) + "\n"
        spool.append(legacy.encode())
        spool.flush()
        ids = [gone["request_id"], garbled["request_id"], old["request_id"]]
        stored = _stored(group, ids)

    assert set(stored) == {gone["request_id"], old["request_id"]}
    assert spool.own is not None
    rejected = (spool.directory / "rejected" / spool.own.path.name).read_text()
    assert garbled["request_id"] in rejected
    assert "not a spool line of this version" in rejected


def test_usage_of_held_and_refused_rows_is_counted_once_without_waiting(
    group, spool, django_db_blocker
):
    """Budgets must see provider calls whose rows wait in a held file or were
    refused: their usage is committed once the batch went through, the held lines
    lose it (so the rows add nothing when they land), the refused ones keep it in
    rejected/ as a record."""
    from datetime import date

    from apps.providers.models import ProviderUsage
    from apps.providers.services import provider_create

    _pause_drain(spool)
    with django_db_blocker.unblock(), _tenant(), _second_table(group) as broken:
        provider = provider_create(
            actor="test",
            name=f"held-{os.urandom(3).hex()}",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            api_key="sk-held-0123456789",
        )
        usage = [f"{provider.pk},{date.today().isoformat()},0,1.5,10,2,0.001"]
        tenant_id = _tenant_id()

        def line(row: dict[str, Any], group_id: int) -> bytes:
            return encode_line(SCHEMA, tenant_id, group_id, row_values(row), usage)

        def requests() -> int:
            counters = ProviderUsage.objects.filter(provider=provider)
            return sum(counters.values_list("requests", flat=True))

        _rename_column(broken, "door", "door_old")
        held_rows = [_row(group), _row(group)]
        for row in held_rows:
            spool.append(line(row, broken))
        spool.append(line(_row(group), 999999))  # no such table: refused
        spool.append(line(_row(group), group.pk))
        spool.flush()
        held = spool.held[(SCHEMA, tenant_id, broken)]
        counted = requests()
        held_text = held.file.path.read_bytes()
        assert spool.own is not None
        rejected = (spool.directory / "rejected" / spool.own.path.name).read_bytes()

        _rename_column(broken, "door_old", "door")
        assert spool.retry_held(now=held.retry_at) == 2
        after = requests()
        landed = _stored(group, [r["request_id"] for r in held_rows], group_id=broken)

    assert counted == 4  # the held two, the refused one, the written one
    assert b"\tu" not in held_text
    assert f"\tu{usage[0]}\t".encode() in rejected
    assert after == 4
    assert len(landed) == 2
