"""A tenant backed up with `backup_tenant` and restored with `restore_tenant` into a
fresh database answers its predictions and lists its history there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from apps.tenants.demo import DEMO_GROUP, demo_rows

from .conftest import MANAGE, PYTHON, database_url

SLUG, HOST = "gamma", "gamma.test"
FRESH_DB = "test_ops_restore"

# Runs in the fresh database after the restore: a new manage key, one prediction
# with the restored predict key, and the group's history through the API.
CHECK = """
import json
from django_tenants.utils import schema_context
from rest_framework.test import APIClient
from apps.accounts.services import api_key_create
from apps.tenants.demo import demo_rows
predict_key, group = "__KEY__", "__GROUP__"
with schema_context("gamma"):
    _, manage_key = api_key_create(name="restore-check", scope="manage", actor="test")
client = APIClient(HTTP_HOST="gamma.test")
client.credentials(HTTP_AUTHORIZATION=f"Api-Key {predict_key}")
answer = client.post(f"/api/v1/groups/{group}/predict/", {"inputs": demo_rows(1)[0]}, format="json")
client.credentials(HTTP_AUTHORIZATION=f"Api-Key {manage_key}")
history = client.get(f"/api/v1/groups/{group}/inferences/")
print(json.dumps({"predict": answer.status_code, "served": answer.json().get("served"),
                  "history": history.status_code, "body": history.json()}))
"""


def _drop_fresh() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [FRESH_DB],
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{FRESH_DB}"')


@pytest.fixture
def gamma(django_db_setup, django_db_blocker, tmp_path, settings):
    """A committed tenant with the demo group, a predict key and 5 logged answers."""
    from apps.accounts.services import api_key_create
    from apps.groups.serving import clear_route_cache
    from apps.tenants import demo
    from apps.tenants.services import tenant_create, tenant_delete

    settings.MEDIA_ROOT = tmp_path / "media-source"
    settings.ARCHIVE_ROOT = tmp_path / "archive-source"
    archive = settings.ARCHIVE_ROOT / SLUG / "1" / "2026-01-01.parquet"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"PAR1 stand-in")
    with django_db_blocker.unblock():
        tenant_create(
            slug=SLUG, name="Gamma", admin_email=f"admin@{HOST}", domains=[HOST]
        )
        with schema_context(SLUG):
            group = demo.seed_demo_content(actor="test")
            _, key = api_key_create(name="p", scope="predict", actor="test")
        clear_route_cache()
        client = APIClient(HTTP_HOST=HOST)
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        for row in demo_rows(5):
            response = client.post(
                f"/api/v1/groups/{DEMO_GROUP}/predict/", {"inputs": row}, format="json"
            )
            assert response.status_code == 200, response.content
        _drop_fresh()
        try:
            yield key, group
        finally:
            clear_route_cache()
            connection.set_schema_to_public()
            tenant_delete(slug=SLUG)
            _drop_fresh()


@pytest.mark.worker
def test_backup_restores_into_a_fresh_database_that_answers_and_lists_history(
    gamma, process_env, tmp_path, django_db_blocker
):
    key, _group = gamma
    backup = tmp_path / "backup"
    with django_db_blocker.unblock():
        call_command("backup_tenant", SLUG, str(backup))
        with pytest.raises(CommandError, match="not empty"):
            call_command("backup_tenant", SLUG, str(backup))
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["schema"] == SLUG
    assert manifest["domains"] == [{"domain": HOST, "is_primary": True}]
    assert manifest["files"]["media"] >= 2  # the two demo model artifacts
    assert manifest["files"]["archive"] == 1

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{FRESH_DB}"')
    env = {
        **process_env,
        "DATABASE_URL": database_url(FRESH_DB),
        "MEDIA_ROOT": str(tmp_path / "media-restored"),
        "ARCHIVE_ROOT": str(tmp_path / "archive-restored"),
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, MANAGE, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    migrated = manage("migrate_schemas", "--shared", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    restored = manage("restore_tenant", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert f"Restored '{SLUG}' ({HOST})" in restored.stdout
    again = manage("restore_tenant", str(backup))
    assert again.returncode != 0 and "already exists" in again.stderr

    assert (
        tmp_path / "archive-restored" / SLUG / "1" / "2026-01-01.parquet"
    ).read_bytes() == b"PAR1 stand-in"
    checked = manage(
        "shell", "-c", CHECK.replace("__KEY__", key).replace("__GROUP__", DEMO_GROUP)
    )
    assert checked.returncode == 0, checked.stderr
    out = json.loads(checked.stdout.strip().splitlines()[-1])
    assert out["predict"] == 200
    assert out["served"]["model"] == "breast-cancer-classifier"
    assert out["history"] == 200, out["body"]
    items = out["body"].get("results", out["body"])
    assert len(items) == 6  # 5 answers from before the backup + 1 after the restore
    assert Path(env["MEDIA_ROOT"], SLUG).is_dir()
