"""Ops tests start real processes (gunicorn, qcluster) on the session's test database."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
PYTHON = sys.executable


def database_url(name: str | None = None) -> str:
    """The test database's URL (or another database's on the same server)."""
    db = connection.settings_dict
    name = name or db["NAME"]
    if db.get("PORT"):
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{name}"
    return f"postgres://{db['USER']}@/{name}?host={db['HOST']}"


@pytest.fixture
def process_env(django_db_setup) -> dict[str, str]:
    """Environment for a child process on the test database, test settings."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
    }
