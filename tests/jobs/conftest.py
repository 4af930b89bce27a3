from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from tests.servers import qcluster_start


def breast_cancer_csv(rows: int | None = None) -> bytes:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    if rows is not None:
        frame = frame.head(rows)
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame.to_csv(index=False).encode()


def diabetes_csv() -> bytes:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["band"] = ["low" if v < 140 else "high" for v in frame["target"]]
    return frame.to_csv(index=False).encode()


def tiny_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["a", "b", "label"])
    for i in range(rows):
        writer.writerow([i, i * 2, "yes" if i % 2 else "no"])
    return out.getvalue().encode()


def upload(data: bytes, name: str = "data.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/csv")


@pytest.fixture(autouse=True)
def _jobs_media(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = str(tmp_path / "media")


def assert_test_database() -> None:
    """A guard for the tests whose workers write through connections of their own:
    the harness's `django_db_setup` (tests/conftest.py) creates the test database
    even when no selected test asks for `db`; never the development one."""
    name = connection.settings_dict["NAME"]
    expected = settings.DATABASES["default"]["TEST"]["NAME"]
    if name != expected:
        pytest.fail(f"connected to {name!r}, not the test database {expected!r}")


def start_worker(extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    assert_test_database()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        "Q_WORKERS": "1",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        **(extra_env or {}),
    }
    return qcluster_start(env)


def kill_worker(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)


def queue_cleanup(*schemas: str) -> None:
    """Forget the queued tasks, results and failures of these tenants: tasks named
    `<schema>:...` or whose first argument is the schema."""
    from django_q.models import OrmQ, Task

    prefixes = tuple(f"{schema}:" for schema in schemas)
    Task.objects.filter(name__startswith=prefixes).delete()
    for queued in OrmQ.objects.all():
        try:
            name = str(queued.task.get("name", ""))
            args = queued.task.get("args") or ()
        except Exception:
            continue
        if name.startswith(prefixes) or (args and args[0] in schemas):
            queued.delete()


@pytest.fixture
def worker(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def]
    proc = start_worker()
    yield proc
    kill_worker(proc)
    with django_db_blocker.unblock():
        queue_cleanup("alpha", "beta")
