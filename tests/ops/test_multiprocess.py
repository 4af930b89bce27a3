"""Real processes: two gunicorn workers whose counters /metrics sums, and two
qcluster processes sharing the ORM queue without running a task twice."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection
from django_q.models import OrmQ, Success
from django_tenants.utils import schema_context
from prometheus_client.parser import text_string_to_metric_families

from apps.core.tasks import tenant_async
from tests.servers import free_port, qcluster_start, wait_until_serving

from .conftest import MANAGE, PYTHON

TOKEN = "multiprocess-scrape-token"
CONF = str(Path(MANAGE).parent / "config" / "gunicorn.conf.py")


def get(port: int, path: str, host: str, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host, "Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, body


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.worker
def test_two_gunicorn_workers_counts_are_summed_by_any_scrape(process_env, tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {
        **process_env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": TOKEN,
        "WEB_CONCURRENCY": "2",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    proc = subprocess.Popen(
        [str(Path(PYTHON).parent / "gunicorn"), "-c", CONF],
        env=env,
        cwd=str(Path(MANAGE).parent),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gunicorn.err", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        wait_until_serving(port, proc)
        n = 60
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda _: get(port, "/api/v1/me/", "alpha.test")[0], range(n))
            )
        assert set(statuses) <= {401, 403}, statuses
        pids = {p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
        assert len(pids) == 2, "both workers should have answered"
        for _ in range(4):  # whichever worker answers the scrape sees the sum
            status, text = get(port, "/metrics", "127.0.0.1", TOKEN)
            assert status == 200, text
            total = sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "modelhub_http_requests_total"
                and s.labels["tenant"] == "alpha"
                and s.labels["route"] == "api/v1/me/"
            )
            assert total == n
        assert get(port, "/metrics", "127.0.0.1")[0] == 401
        access = (tmp_path / "access.log").read_text()
        assert "request_id=" in access and "host=alpha.test" in access
    finally:
        stop(proc)


RUNS_TABLE = "ops_task_runs"


def record_run(marker: str) -> int:
    """The task: one row per execution, with the pid of the process that ran it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RUNS_TABLE} (marker, pid) VALUES (%s, %s)",
            [marker, os.getpid()],
        )
    return os.getpid()


@pytest.mark.worker
def test_two_clusters_share_the_queue_and_run_each_task_once(
    process_env, django_db_blocker
):
    n = 50
    with django_db_blocker.unblock():
        with schema_context("alpha"), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {RUNS_TABLE}")
            cursor.execute(f"CREATE TABLE {RUNS_TABLE} (marker text, pid int)")
        Success.objects.filter(name__startswith="alpha:record_run").delete()
        OrmQ.objects.all().delete()
        with schema_context("alpha"):
            for i in range(n):
                tenant_async(record_run, f"task-{i}", on_commit=False)
    env = {**process_env, "Q_WORKERS": "2"}
    clusters = [qcluster_start(env) for _ in range(2)]
    try:
        with django_db_blocker.unblock():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = Success.objects.filter(name__startswith="alpha:record_run")
                if done.count() >= n and not OrmQ.objects.exists():
                    break
                time.sleep(0.5)
            time.sleep(2)  # let a duplicate, if any, land
            with schema_context("alpha"), connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT marker, count(*) FROM {RUNS_TABLE} GROUP BY marker"
                )
                runs = dict(cursor.fetchall())
                cursor.execute(f"SELECT count(DISTINCT pid) FROM {RUNS_TABLE}")
                processes = cursor.fetchone()[0]
            successes = Success.objects.filter(
                name__startswith="alpha:record_run"
            ).count()
    finally:
        for proc in clusters:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        with django_db_blocker.unblock():
            with schema_context("alpha"), connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {RUNS_TABLE}")
            Success.objects.filter(name__startswith="alpha:record_run").delete()
    assert runs == {f"task-{i}": 1 for i in range(n)}
    assert successes == n
    assert processes >= 2  # the work really was shared
