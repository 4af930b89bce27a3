"""Background explanations run as a task (autocommit): batches take turns on two
connections of their own, one stored while the next is computed
(apps/inference/tasks.py, `_explain_overlapped`). The rows must be committed for
those connections to see them: this module's tenant and rows are real, and dropped
at its end."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.inference import tasks
from apps.inference.explain import explain_rows, explainer_cache_clear
from apps.registry.models import FeatureImportance
from apps.tenants.demo import demo_rows, seed_demo_content
from apps.tenants.services import tenant_create, tenant_delete

SCHEMA = "overlap"
ROWS = 250
BATCH = 60  # five batches, the two connections taking turns


@pytest.fixture(scope="module")
def group(django_db_setup, django_db_blocker, trained):  # type: ignore[no-untyped-def]
    from apps.groups.serving import clear_route_cache

    with django_db_blocker.unblock():
        from apps.tenants.models import Organization

        if Organization.objects.filter(schema_name=SCHEMA).exists():  # a killed run's
            tenant_delete(slug=SCHEMA)
        tenant_create(
            slug=SCHEMA, name="Overlap", admin_email="a@overlap.test", domains=[]
        )
        try:
            clear_route_cache()
            explainer_cache_clear()
            with schema_context(SCHEMA):
                yield seed_demo_content(actor="test")
        finally:
            explainer_cache_clear()
            tenant_delete(slug=SCHEMA)


@pytest.fixture
def pending(group, django_db_blocker) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """ROWS sampled rows waiting for an explanation, committed; removed afterwards
    with the group's importance."""
    table = f'"{SCHEMA}".inference_log_g{group.pk}'
    inputs = [json.dumps(r) for r in demo_rows(50)]
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        member = group.members.first()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (request_id, ts, member_id, version_id, role, "
                "status, requester, door, latency_ms, input, output, "
                "explain_requested) "
                "SELECT gen_random_uuid(), now() - (i || ' milliseconds')::interval, "
                "%s, %s, 'champion', 'ok', 'test', 'rest', 4.0, "
                "(%s::jsonb[])[1 + i %% 50], '{\"prediction\": 1}', true "
                "FROM generate_series(1, %s) AS i",
                [member.pk, member.version_id, inputs, ROWS],
            )
        try:
            yield member
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table}")
            FeatureImportance.objects.all().delete()


def _explained(group: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT input::text, explanation::text FROM inference_log_g{group.pk} "
            "WHERE explanation IS NOT NULL AND NOT explain_requested"
        )
        return [(json.loads(i), json.loads(e)) for i, e in cursor.fetchall()]


def _waiting(group: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM inference_log_g{group.pk} "
            "WHERE explain_requested AND explanation IS NULL"
        )
        return int(cursor.fetchone()[0])


def test_batches_taking_turns_store_each_row_once(
    group, pending, django_db_blocker, monkeypatch
):
    opened: list[psycopg.Connection[Any]] = []
    connect = psycopg.connect
    monkeypatch.setattr(
        psycopg,
        "connect",
        lambda *a, **k: opened.append(connect(*a, **k)) or opened[-1],
    )
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        assert not connection.in_atomic_block
        done = tasks.explain_pending(group.pk, batch=BATCH)
        # The pass opened its two connections, and both are closed once it returns.
        assert len(opened) == 2 and all(c.closed for c in opened)
        again = tasks.explain_pending(group.pk, batch=BATCH)
        assert len(opened) == 3  # nothing to do: one connection, to find that out

        assert (done, again) == (ROWS, 0)
        stored = _explained(group)
        assert len(stored) == ROWS and _waiting(group) == 0
        # Each one as the explanation of its own input, computed apart.
        for given, explanation in stored[:5]:
            assert explanation == json.loads(
                json.dumps(explain_rows(pending.version_id, [given])[0])
            )
        # Folded into the global importance once per row, in the rows' transactions.
        importance = {
            f.feature: f
            for f in FeatureImportance.objects.filter(version_id=pending.version_id)
        }
        assert {f.count for f in importance.values()} == {ROWS}
        for feature, record in importance.items():
            total = sum(abs(e["values"][feature]) for _, e in stored)
            assert record.abs_sum == pytest.approx(total, rel=1e-9)


def test_two_workers_at_once_share_the_rows(group, pending, django_db_blocker):
    done: list[int] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            with schema_context(SCHEMA):
                done.append(tasks.explain_pending(group.pk, batch=BATCH // 2))
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append(exc)
        finally:
            connection.close()

    with django_db_blocker.unblock():
        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failed, failed
        assert sum(done) == ROWS, done
        with schema_context(SCHEMA):
            assert len(_explained(group)) == ROWS
            counts = set(
                FeatureImportance.objects.filter(
                    version_id=pending.version_id
                ).values_list("count", flat=True)
            )
            assert counts == {ROWS}


def test_a_batch_that_fails_to_store_stays_pending(
    group, pending, django_db_blocker, monkeypatch
):
    real, calls = tasks._store, []

    def store(raw: Any, table: Any, work: Any) -> None:
        calls.append(len(work.documents))
        if len(calls) == 2:
            raise psycopg.errors.QueryCanceled("canceling statement (test)")
        real(raw, table, work)

    monkeypatch.setattr(tasks, "_store", store)
    with django_db_blocker.unblock(), schema_context(SCHEMA):
        with pytest.raises(psycopg.errors.QueryCanceled):
            tasks.explain_pending(group.pk, batch=BATCH)
        # The second batch is not stored: its rows wait for the next pass. The first
        # is, and so is the third, computed while the second failed (the failure
        # shows when its connection's turn comes back).
        assert len(_explained(group)) == 2 * BATCH
        assert _waiting(group) == ROWS - 2 * BATCH
        monkeypatch.setattr(tasks, "_store", real)
        assert tasks.explain_pending(group.pk, batch=BATCH) == ROWS - 2 * BATCH
        assert _waiting(group) == 0
        counts = set(
            FeatureImportance.objects.filter(version_id=pending.version_id).values_list(
                "count", flat=True
            )
        )
        assert counts == {ROWS}
