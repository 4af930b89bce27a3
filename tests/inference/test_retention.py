"""Retention: partitions past a group's retention are archived to Parquet, verified and
dropped; archives are listed and downloaded per tenant; the daily schedule fans out."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django_q.models import OrmQ, Schedule
from django_tenants.utils import schema_context

from apps.core.context import new_request_id
from apps.core.tasks import run_in_tenant
from apps.inference import retention, tables
from apps.inference.models import InferenceArchive
from apps.inference.retention import (
    apply_retention,
    inference_settings_set,
    retention_days_for,
)
from apps.inference.retention_tasks import apply_retention_all_tenants
from apps.inference.writer import log_write
from apps.tenants.services import tenant_create, tenant_delete
from tests.inference.retention_helpers import (
    active_group,
    bulk_rows,
    log_rows,
    logged_ids,
    past_day,
    today_utc,
)

URLS = "tests.inference.retention_helpers"


@pytest.fixture
def archive_root(settings, tmp_path) -> Path:
    settings.ARCHIVE_ROOT = tmp_path / "archive"
    return settings.ARCHIVE_ROOT.resolve()


def _file(root: Path, schema: str, group_id: int, day) -> Path:  # type: ignore[no-untyped-def]
    return root / schema / str(group_id) / f"{day:%Y-%m-%d}.parquet"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _history(group_id: int) -> dict[str, object]:
    """An old group's log: two days past a 30-day retention, one exactly at the
    limit, one recent, and today."""
    d45, d40, d30, d10 = (past_day(group_id, n) for n in (45, 40, 30, 10))
    return {
        "d45": d45,
        "d40": d40,
        "d30": d30,
        "d10": d10,
        "ids45": log_rows(group_id, d45, 3, routing_key="user-45"),
        "ids40": log_rows(group_id, d40, 2),
        "ids30": log_rows(group_id, d30, 1),
        "ids10": log_rows(group_id, d10, 1),
        "now": log_rows(group_id, today_utc(), 1),
    }


def test_archives_then_drops_exactly_the_partitions_past_retention(
    tenant_a, archive_root
):
    with schema_context("alpha"):
        group = active_group("kept-30", retention_days=30)
        h = _history(group.pk)
        before = tables.partitions(group.pk)

        results = apply_retention(group=group)

        after = tables.partitions(group.pk)
        remaining = logged_ids(group.pk)
        records = list(InferenceArchive.objects.filter(group=group).order_by("day"))

    assert [(r.day, r.action, r.rows, r.file_rows) for r in results] == [
        (h["d45"], "archived", 3, 3),
        (h["d40"], "archived", 2, 2),
    ]
    gone = {
        tables.partition_name(group.pk, h["d45"]),
        tables.partition_name(group.pk, h["d40"]),
    }
    assert set(before) - set(after) == gone
    assert tables.partition_name(group.pk, h["d30"]) in after  # day == cutoff: kept
    assert remaining == set(h["ids30"]) | set(h["ids10"]) | set(h["now"])

    path45 = _file(archive_root, "alpha", group.pk, h["d45"])
    table = pq.read_table(path45)
    assert table.column("request_id").to_pylist() == h["ids45"]
    assert table.schema.field("request_id").type == pa.string()
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("input").type == pa.string()
    assert table.schema.field("member_id").type == pa.int64()
    assert table.schema.field("latency_ms").type == pa.float32()
    assert table.schema.field("shadow").type == pa.bool_()
    first = table.slice(0, 1).to_pylist()[0]
    assert first["ts"] == datetime.combine(
        h["d45"], datetime.min.time(), UTC
    ) + timedelta(hours=12)
    assert json.loads(first["input"]) == {"x": 0, "day": f"{h['d45']}"}
    assert json.loads(first["output"]) == {"y": 0}
    assert first["latency_ms"] == 10.5 and first["routing_key"] == "user-45"
    assert first["status"] == "ok" and first["shadow"] is False
    assert (
        pq.read_table(_file(archive_root, "alpha", group.pk, h["d40"]))
        .column("request_id")
        .to_pylist()
        == h["ids40"]
    )

    assert [(a.day, a.rows, a.path) for a in records] == [
        (h["d45"], 3, f"alpha/{group.pk}/{h['d45']:%Y-%m-%d}.parquet"),
        (h["d40"], 2, f"alpha/{group.pk}/{h['d40']:%Y-%m-%d}.parquet"),
    ]
    assert records[0].sha256 == _sha(path45)
    assert records[0].bytes == path45.stat().st_size
    assert results[0].sha256 == records[0].sha256


def test_dry_run_reports_and_changes_nothing(tenant_a, archive_root):
    with schema_context("alpha"):
        group = active_group("dry", retention_days=30)
        h = _history(group.pk)
        before = tables.partitions(group.pk)
        ids_before = logged_ids(group.pk)

        results = apply_retention(group=group, dry_run=True)

        assert tables.partitions(group.pk) == before
        assert logged_ids(group.pk) == ids_before
        assert not InferenceArchive.objects.filter(group=group).exists()
    assert [(r.day, r.action, r.rows) for r in results] == [
        (h["d45"], "would_archive", 3),
        (h["d40"], "would_archive", 2),
    ]
    assert not archive_root.exists()


def test_rerun_after_a_crash_between_write_and_drop_reuses_the_verified_file(
    tenant_a, archive_root, monkeypatch
):
    def power_cut(group_id, part):  # type: ignore[no-untyped-def]
        raise RuntimeError("power cut")

    with schema_context("alpha"):
        group = active_group("crash", retention_days=30)
        h = _history(group.pk)
        part45 = tables.partition_name(group.pk, h["d45"])
        monkeypatch.setattr(tables, "drop_partition", power_cut)

        crashed = apply_retention(group=group)

        path45 = _file(archive_root, "alpha", group.pk, h["d45"])
        written_sha = _sha(path45)
        assert part45 in tables.partitions(group.pk)
        assert not InferenceArchive.objects.filter(group=group).exists()
        monkeypatch.undo()

        results = apply_retention(group=group)

        assert part45 not in tables.partitions(group.pk)
        record = InferenceArchive.objects.get(group=group, day=h["d45"])
    assert [(r.action, r.error) for r in crashed] == [("failed", "power cut")] * 2
    assert [(r.day, r.action, r.rows, r.reused) for r in results] == [
        (h["d45"], "archived", 3, True),
        (h["d40"], "archived", 2, True),
    ]
    assert _sha(path45) == written_sha == record.sha256 and record.rows == 3
    assert {p.name for p in path45.parent.iterdir()} == {  # no temp files left
        f"{h['d45']:%Y-%m-%d}.parquet",
        f"{h['d40']:%Y-%m-%d}.parquet",
    }


def test_an_existing_file_is_never_overwritten_with_fewer_rows(
    tenant_a, archive_root, monkeypatch
):
    def power_cut(group_id, part):  # type: ignore[no-untyped-def]
        raise RuntimeError("power cut")

    with schema_context("alpha"):
        group = active_group("fewer", retention_days=30)
        h = _history(group.pk)
        monkeypatch.setattr(tables, "drop_partition", power_cut)
        apply_retention(group=group)
        monkeypatch.undo()
        lost = h["ids45"][0]
        with connection.cursor() as cursor:  # the partition lost a row since
            cursor.execute(
                f"DELETE FROM inference_log_g{group.pk} WHERE request_id = %s", [lost]
            )

        results = apply_retention(group=group)

        # Late rows for an archived day join its file; nothing already there leaves.
        tables.ensure_partitions(group.pk, today=h["d45"], ahead=0)
        late = log_rows(group.pk, h["d45"], 1)
        again = apply_retention(group=group)
        record = InferenceArchive.objects.get(group=group, day=h["d45"])

    first = results[0]
    assert (first.day, first.rows, first.file_rows, first.reused) == (
        h["d45"],
        2,
        3,
        False,
    )
    assert [(r.day, r.rows, r.file_rows) for r in again] == [(h["d45"], 1, 4)]
    table = pq.read_table(_file(archive_root, "alpha", group.pk, h["d45"]))
    assert sorted(table.column("request_id").to_pylist()) == sorted(h["ids45"] + late)
    assert record.rows == 4 and record.sha256 == again[0].sha256


def test_an_altered_archive_is_refused_and_the_partition_kept(tenant_a, archive_root):
    with schema_context("alpha"):
        group = active_group("altered", retention_days=30)
        day = past_day(group.pk, 50)
        log_rows(group.pk, day, 2)
        apply_retention(group=group)
        path = _file(archive_root, "alpha", group.pk, day)
        path.write_bytes(path.read_bytes() + b"x")
        tables.ensure_partitions(group.pk, today=day, ahead=0)
        late = log_rows(group.pk, day, 1)

        results = apply_retention(group=group)

        assert tables.partition_name(group.pk, day) in tables.partitions(group.pk)
        assert set(late) <= logged_ids(group.pk)
    assert [(r.action, r.error) for r in results] == [
        ("failed", f"{path} changed on disk since it was archived.")
    ]


def test_a_row_arriving_between_export_and_lock_is_archived_too(
    tenant_a, archive_root, monkeypatch
):
    real = retention._write_archive
    slipped: list[str] = []

    def export_then_late_row(**kwargs):  # type: ignore[no-untyped-def]
        written = real(**kwargs)
        if not slipped:  # once: a late row lands after the first export
            slipped.extend(log_rows(group.pk, day, 1, status="late"))
        return written

    with schema_context("alpha"):
        group = active_group("late", retention_days=30)
        day = past_day(group.pk, 40)
        ids = log_rows(group.pk, day, 3)
        monkeypatch.setattr(retention, "_write_archive", export_then_late_row)

        results = apply_retention(group=group)

        assert tables.partition_name(group.pk, day) not in tables.partitions(group.pk)
    assert [(r.rows, r.file_rows) for r in results] == [(4, 4)]
    table = pq.read_table(_file(archive_root, "alpha", group.pk, day))
    assert sorted(table.column("request_id").to_pylist()) == sorted(ids + slipped)


@pytest.fixture(scope="module")
def committed_tenant(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """A tenant of its own whose writes really commit, so that other connections
    (threads) see them; dropped after the module."""
    with django_db_blocker.unblock():
        tenant_create(
            slug="retainer",
            name="Retainer",
            admin_email="a@retainer.test",
            domains=["retainer.test"],
        )
    try:
        yield "retainer"
    finally:
        with django_db_blocker.unblock():
            connection.set_schema_to_public()
            tenant_delete(slug="retainer")


def test_retention_while_traffic_flows_loses_no_new_rows(
    committed_tenant, django_db_blocker, settings, tmp_path
):
    settings.ARCHIVE_ROOT = tmp_path / "archive"
    written: list[tuple[float, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def traffic(group_id: int) -> None:
        try:
            with schema_context(committed_tenant):
                while not stop.is_set():
                    rid = new_request_id()
                    log_write(group_id, {"request_id": rid, "status": "ok"})
                    written.append((time.monotonic(), rid))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    with django_db_blocker.unblock():
        with schema_context(committed_tenant):
            group = active_group("busy", retention_days=30)
            old_days = [past_day(group.pk, n) for n in (60, 50, 40)]
            for day in old_days:
                bulk_rows(group.pk, day, 20_000)
        thread = threading.Thread(target=traffic, args=(group.pk,))
        thread.start()
        try:
            while len(written) < 20 and not errors:
                time.sleep(0.01)
            with schema_context(committed_tenant):
                started = time.monotonic()
                results = apply_retention(group=group)
                finished = time.monotonic()
            count = len(written)
            while len(written) < count + 20 and not errors:
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join(timeout=30)
        with schema_context(committed_tenant):
            logged = logged_ids(group.pk)
            parts = tables.partitions(group.pk)

    assert not errors, errors
    assert [(r.day, r.action, r.rows, r.file_rows) for r in results] == [
        (day, "archived", 20_000, 20_000) for day in old_days
    ]
    during = [rid for at, rid in written if started <= at <= finished]
    assert during, "traffic should have flowed while retention ran"
    assert {rid for _, rid in written} <= logged
    assert not {tables.partition_name(group.pk, d) for d in old_days} & set(parts)
    root = Path(settings.ARCHIVE_ROOT).resolve()
    for day in old_days:
        path = _file(root, committed_tenant, group.pk, day)
        assert pq.ParquetFile(path).metadata.num_rows == 20_000


def test_retention_gives_way_to_a_long_query_and_drops_once_it_ends(
    committed_tenant, django_db_blocker, settings, tmp_path, monkeypatch
):
    settings.ARCHIVE_ROOT = tmp_path / "archive"
    monkeypatch.setattr(retention, "LOCK_TIMEOUT", "100ms")
    monkeypatch.setattr(retention, "LOCK_RETRY_SECONDS", 0.01)
    holding, release = threading.Event(), threading.Event()

    def long_query(group_id: int) -> None:
        try:
            with schema_context(committed_tenant), transaction.atomic():
                with connection.cursor() as cursor:  # e.g. a report over the table
                    cursor.execute(
                        f"LOCK TABLE ONLY {tables.table_name(group_id)} "
                        "IN ACCESS SHARE MODE"
                    )
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    with django_db_blocker.unblock():
        with schema_context(committed_tenant):
            group = active_group("reported-on", retention_days=30)
            day = past_day(group.pk, 45)
            ids = log_rows(group.pk, day, 3)
        thread = threading.Thread(target=long_query, args=(group.pk,))
        thread.start()
        try:
            holding.wait(timeout=30)
            with schema_context(committed_tenant):
                blocked = apply_retention(group=group)
                kept = tables.partitions(group.pk)
        finally:
            release.set()
            thread.join(timeout=30)
        with schema_context(committed_tenant):
            done = apply_retention(group=group)
            parts = tables.partitions(group.pk)

    assert [r.action for r in blocked] == ["failed"]
    assert "lock timeout" in blocked[0].error
    assert tables.partition_name(group.pk, day) in kept
    assert [(r.action, r.rows, r.reused) for r in done] == [("archived", 3, True)]
    assert tables.partition_name(group.pk, day) not in parts
    path = _file(Path(settings.ARCHIVE_ROOT).resolve(), committed_tenant, group.pk, day)
    assert pq.read_table(path).column("request_id").to_pylist() == ids


@pytest.mark.urls(URLS)
def test_archives_api_lists_and_downloads_only_in_its_own_tenant(
    tenant_a, tenant_b, make_key, api_client, archive_root
):
    with schema_context("alpha"):
        group = active_group("shared-slug", retention_days=30)
        day = past_day(group.pk, 40)
        log_rows(group.pk, day, 2)
        apply_retention(group=group)
    with schema_context("beta"):
        active_group("shared-slug", retention_days=30)  # same slug, nothing archived
    _, key_a = make_key(tenant_a)
    _, key_b = make_key(tenant_b)
    _, predict_a = make_key(tenant_a, scope="predict")
    client_a = api_client(tenant_a, key=key_a)
    client_b = api_client(tenant_b, key=key_b)
    base = "/api/v1/groups/shared-slug/archives/"
    path = _file(archive_root, "alpha", group.pk, day)

    listed = client_a.get(base)
    download = client_a.get(f"{base}{day:%Y-%m-%d}/download/")

    assert listed.status_code == 200
    [item] = listed.json()["results"]
    assert item["day"] == f"{day:%Y-%m-%d}" and item["rows"] == 2
    assert item["sha256"] == _sha(path) and item["bytes"] == path.stat().st_size
    assert item["download_url"] == (f"http://alpha.test{base}{day:%Y-%m-%d}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/vnd.apache.parquet"
    assert b"".join(download.streaming_content) == path.read_bytes()

    assert client_b.get(base).json()["results"] == []
    assert client_b.get(f"{base}{day:%Y-%m-%d}/download/").status_code == 404
    assert client_b.get("/api/v1/groups/no-such/archives/").status_code == 404
    assert api_client(tenant_a, key=predict_a).get(base).status_code == 403
    assert client_a.get(f"{base}..%2F..%2Fx/download/").status_code == 404
    bad = client_a.get(f"{base}2025-13-01/download/")
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"day": ["Expected YYYY-MM-DD."]}
    assert client_a.get(f"{base}2001-01-01/download/").status_code == 404
    assert sorted(p.name for p in archive_root.iterdir()) == ["alpha"]


@pytest.mark.urls(URLS)
def test_download_refuses_a_file_that_changed_on_disk(
    tenant_a, make_key, api_client, archive_root
):
    with schema_context("alpha"):
        group = active_group("tampered", retention_days=30)
        day = past_day(group.pk, 40)
        log_rows(group.pk, day, 1)
        apply_retention(group=group)
    path = _file(archive_root, "alpha", group.pk, day)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    _, key = make_key(tenant_a)

    response = api_client(tenant_a, key=key).get(
        f"/api/v1/groups/tampered/archives/{day:%Y-%m-%d}/download/"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "archive_tampered"


@pytest.mark.urls(URLS)
def test_archives_page_lists_days_rows_and_download_links(
    tenant_a, tenant_b, make_user, page_client, archive_root
):
    with schema_context("alpha"):
        group = active_group("paged", retention_days=30)
        days = [past_day(group.pk, n) for n in (41, 40)]
        for n, day in enumerate(days, start=2):
            log_rows(group.pk, day, n)
        apply_retention(group=group)
    viewer = make_user(tenant_a, "viewer")
    client = page_client(tenant_a, viewer)

    page = client.get("/groups/paged/archives/")
    fragment = client.get("/groups/paged/archives/", HTTP_HX_REQUEST="true")

    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html
    for day, rows in zip(days, (2, 3), strict=True):
        row = html.split(f'id="archive-{day:%Y-%m-%d}"', 1)[1].split("</tr>", 1)[0]
        assert f'<td class="num">{rows}</td>' in row
        assert f"/api/v1/groups/paged/archives/{day:%Y-%m-%d}/download/" in row
    assert "kept in the database for 30 days" in html
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    assert 'id="group-archives"' in fragment.content.decode()
    other = page_client(tenant_b, make_user(tenant_b, "viewer"))
    assert other.get("/groups/paged/archives/").status_code == 404


def test_command_prints_one_line_per_partition_and_totals(
    tenant_a, archive_root, capsys
):
    with schema_context("alpha"):
        group = active_group("cmd", retention_days=30)
        h = _history(group.pk)
    f45 = _file(archive_root, "alpha", group.pk, h["d45"])
    f40 = _file(archive_root, "alpha", group.pk, h["d40"])

    call_command("apply_retention", "--dry-run", "--tenant", "alpha", "--group", "cmd")
    dry = capsys.readouterr().out.splitlines()
    call_command("apply_retention", "--tenant", "alpha", "--group", "cmd")
    done = capsys.readouterr().out.splitlines()

    assert dry == [
        "tenant\tgroup\tday\trows\tfile\tresult",
        f"alpha\tcmd\t{h['d45']:%Y-%m-%d}\t3\t{f45}\twould archive",
        f"alpha\tcmd\t{h['d40']:%Y-%m-%d}\t2\t{f40}\twould archive",
        "total: would archive 2 partition(s), 5 row(s); 0 failed",
    ]
    assert done == [
        "tenant\tgroup\tday\trows\tfile\tresult",
        f"alpha\tcmd\t{h['d45']:%Y-%m-%d}\t3\t{f45}\tarchived",
        f"alpha\tcmd\t{h['d40']:%Y-%m-%d}\t2\t{f40}\tarchived",
        "total: archived 2 partition(s), 5 row(s); 0 failed",
    ]
    assert pq.ParquetFile(f45).metadata.num_rows == 3
    with pytest.raises(CommandError, match="No group 'nope' with an inference table"):
        call_command("apply_retention", "--group", "nope")


def test_daily_schedule_exists_and_fans_out_one_task_per_tenant(
    tenant_a, tenant_b, archive_root
):
    schedule = Schedule.objects.get(
        func="apps.inference.retention_tasks.apply_retention_all_tenants"
    )
    assert schedule.schedule_type == Schedule.DAILY

    count = apply_retention_all_tenants()

    queued = [q.task["args"] for q in OrmQ.objects.all()]
    mine = [a for a in queued if a[1].endswith("apply_retention_in_tenant")]
    assert count == len(mine) and {"alpha", "beta"} <= {a[0] for a in mine}
    assert "public" not in {a[0] for a in mine}

    with schema_context("alpha"):
        group = active_group("scheduled", retention_days=30)
        day = past_day(group.pk, 31)
        log_rows(group.pk, day, 2)
    summary = run_in_tenant(
        "alpha", "apps.inference.retention_tasks.apply_retention_in_tenant"
    )
    assert summary == {"partitions": 1, "rows": 2, "failed": []}


def test_retention_days_are_the_groups_own_or_the_tenant_default(tenant_a):
    with schema_context("alpha"):
        group = active_group("days", retention_days=12)
        assert retention_days_for(group) == 12
        inference_settings_set(default_retention_days=7)
        group.retention_days = 0
        assert retention_days_for(group) == 7
        assert retention.default_retention_days() == 7
