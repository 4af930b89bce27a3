"""Tenant isolation of background work, runtime tables and files (reliability item 1;
the route matrix is tests/reliability/test_isolation_matrix.py)."""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from datetime import date

import pytest
from django.db import connection
from django_q.models import OrmQ, Task
from django_q.tasks import async_task
from django_tenants.utils import schema_context

from apps.core.errors import ApplicationError
from apps.core.tasks import tenant_async
from apps.inference import tables
from apps.inference.retention import archive_path, tenant_archive_root
from apps.jobs.datasets import dataset_file_path
from apps.jobs.models import Dataset
from apps.registry.artifacts import (
    artifact_file_path,
    sanitise_name,
    tenant_media_root,
)
from apps.registry.models import ModelArtifact, RegisteredModel
from apps.registry.services import model_create
from apps.tenants.demo import seed_demo_content
from tests.jobs.conftest import start_worker
from tests.reliability.reliability_helpers import committed_tenant

FINGERPRINT = "tests.reliability.reliability_helpers.tenant_fingerprint"
TASKS = 500
SCHEMAS = ("alpha", "beta", "relt3", "relt4", "relt5")


@pytest.mark.slow
@pytest.mark.worker
def test_500_tasks_across_5_tenants_each_see_only_their_schema(
    django_db_setup, django_db_blocker
):
    with django_db_blocker.unblock(), ExitStack() as stack:
        for slug in SCHEMAS[2:]:
            stack.enter_context(committed_tenant(slug))
        for schema in SCHEMAS:
            with schema_context(schema):
                model_create(name=f"fp-{schema}", actor="test")
        try:
            enqueued = {}
            for i in range(TASKS):
                schema = SCHEMAS[i % len(SCHEMAS)]
                with schema_context(schema):
                    marker = f"{schema}-{i}"
                    enqueued[marker] = tenant_async(
                        FINGERPRINT, marker, on_commit=False
                    )
            # Enqueued by hand, past tenant_async's own guard: the worker must refuse.
            orphans = [
                async_task("apps.core.tasks.run_in_tenant", schema, FINGERPRINT)
                for schema in (None, "", "public")
            ]
            worker = start_worker({"Q_WORKERS": "4"})
            try:
                ids = set(enqueued.values()) | set(orphans)
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline:
                    if Task.objects.filter(id__in=ids).count() == len(ids):
                        break
                    time.sleep(0.5)
            finally:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=15)
            done = {t.id: t for t in Task.objects.filter(id__in=ids)}
        finally:
            for schema in SCHEMAS[:2]:
                with schema_context(schema):
                    RegisteredModel.objects.filter(name=f"fp-{schema}").delete()
            Task.objects.filter(id__in=set(enqueued.values()) | set(orphans)).delete()
            OrmQ.objects.all().delete()
    assert len(done) == TASKS + len(orphans), f"{len(done)} finished"
    wrong = []
    for marker, task_id in enqueued.items():
        schema = marker.split("-", 1)[0]
        task = done[task_id]
        expected = {
            "schema": schema,
            "sql_schema": schema,
            "models": [f"fp-{schema}"],
            "marker": marker,
        }
        if not task.success or task.result != expected:
            wrong.append((marker, task.result))
    assert wrong == [], wrong[:5]
    for task_id in orphans:
        assert not done[task_id].success
        assert "has no tenant schema; not run" in str(done[task_id].result)


def test_no_runtime_table_in_public(tenant_a):
    with schema_context("alpha"):
        group = seed_demo_content(actor="test")
    connection.set_schema_to_public()
    with pytest.raises(RuntimeError, match="needs a tenant schema, not public"):
        tables.provision(group.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_name LIKE 'inference_log%%'"
        )
        found = cursor.fetchall()
    in_public = [name for schema, name in found if schema == "public"]
    assert in_public == []
    assert ("alpha", tables.table_name(group.pk)) in found


def test_artifacts_are_stored_and_read_only_under_their_tenant(
    tenant_a, tenant_b, make_key, api_client
):
    with schema_context("alpha"):
        group = seed_demo_content(actor="test")
        artifacts = list(
            ModelArtifact.objects.filter(version__memberships__group=group)
        )
        paths = [artifact_file_path(a) for a in artifacts]
    assert artifacts and all(
        p.is_relative_to(tenant_media_root("alpha")) and p.exists() for p in paths
    )
    artifact = artifacts[0]
    url = (
        f"/api/v1/models/versions/{artifact.version_id}/artifacts/"
        f"{artifact.pk}/download/"
    )
    _, key_a = make_key(tenant_a)
    _, key_b = make_key(tenant_b)
    assert api_client(tenant_a, key=key_a).get(url).status_code == 200
    # B's key on B's host: A's ids do not exist there; on A's host: not a key there.
    assert api_client(tenant_b, key=key_b).get(url).status_code == 404
    assert api_client(tenant_a, key=key_b).get(url).status_code in (401, 403)


@pytest.mark.parametrize(
    "stored", ["../beta/secret.skops", "../../etc/passwd", "/etc/passwd", "a/../../x"]
)
def test_path_traversal_in_a_stored_artifact_path_is_refused(tenant_a, stored):
    with (
        schema_context("alpha"),
        pytest.raises(ApplicationError, match="leaves its organisation"),
    ):
        artifact_file_path(ModelArtifact(path=stored))


@pytest.mark.parametrize("stored", ["../beta/data.csv", "../../etc/passwd", "/tmp/x"])
def test_path_traversal_in_a_stored_dataset_path_is_refused(tenant_a, stored):
    with (
        schema_context("alpha"),
        pytest.raises(RuntimeError, match="escapes the tenant's directory"),
    ):
        dataset_file_path(Dataset(path=stored))


@pytest.mark.parametrize("schema", ["..", "../beta", "/etc", ""])
def test_tenant_roots_refuse_schema_names_that_leave_the_base(schema):
    with pytest.raises(RuntimeError, match="does not make"):
        tenant_media_root(schema)
    with pytest.raises(RuntimeError, match="does not make"):
        tenant_archive_root(schema)


def test_archive_paths_are_built_from_ids_only():
    path = archive_path("alpha", 7, date(2026, 1, 2))
    assert path == tenant_archive_root("alpha") / "7" / "2026-01-02.parquet"
    with pytest.raises((ValueError, TypeError)):
        archive_path("alpha", "../beta", date(2026, 1, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../beta/model.skops", "model.skops"),
        ("..\\..\\beta\\model.skops", "model.skops"),
        ("/etc/passwd", "passwd"),
        ("..", "upload"),
    ],
)
def test_uploaded_file_names_lose_their_directories(name, expected):
    assert sanitise_name(name) == expected
