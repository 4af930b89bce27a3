"""A killed web worker loses no acknowledged row: every 2xx prediction's request_id is
in the group's table. In the direct mode because the row is committed before the
answer is sent; in the spool mode because it is in the worker's spool file before the
answer, and another worker replays the file of the one that was killed (under the
production configuration, the server's drain process copies it, itself killed too and
started again by the master)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import psutil
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.accounts.services import api_key_create
from apps.tenants.demo import DEMO_GROUP, demo_rows, seed_demo_content
from apps.tenants.services import tenant_create, tenant_delete
from tests.servers import (
    free_port,
    gunicorn_command,
    production_gunicorn,
    start_detached,
)


@pytest.mark.worker
@pytest.mark.parametrize("mode", ["direct", "spool", "spool, drain process"])
def test_killing_a_web_worker_loses_no_acknowledged_row(
    mode, tmp_path, django_db_setup, django_db_blocker
):
    with django_db_blocker.unblock():
        tenant_create(
            slug="durable",
            name="Durable",
            admin_email="a@durable.test",
            domains=["durable.test"],
        )
        try:
            with schema_context("durable"):
                group = seed_demo_content(actor="test")
                _, key = api_key_create(name="load", scope="predict", actor="test")

            def logged() -> set[str]:
                with schema_context("durable"), connection.cursor() as cursor:
                    cursor.execute(
                        f"SELECT request_id::text FROM inference_log_g{group.pk}"
                    )
                    return {row[0] for row in cursor.fetchall()}

            acknowledged, killed, respawned = _run_and_kill(key, mode, tmp_path, logged)
            stored = logged()
        finally:
            tenant_delete(slug="durable")
    assert killed and respawned and not set(killed) & set(respawned)
    assert len(acknowledged) >= 40  # traffic before and after the kill
    assert acknowledged <= stored, f"lost: {sorted(acknowledged - stored)[:5]}"
    # Every file was drained and removed: the killed worker's by a worker that
    # adopted it (or by the drain process, killed too and started again), the
    # others' at their exit.
    assert not list(tmp_path.glob("*.spool")) and not (tmp_path / "rejected").exists()


def _run_and_kill(
    key: str, mode: str, spool_dir: Path, logged: Callable[[], set[str]]
) -> tuple[set[str], list[int], list[int]]:
    db = connection.settings_dict
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        "INFERENCE_LOG_MODE": mode.split(",")[0],
        "INFERENCE_SPOOL_DIR": str(spool_dir),
        "INFERENCE_SPOOL_ADOPT_SECONDS": "0.5",
    }
    command = gunicorn_command(port)
    if mode == "spool, drain process":  # the production configuration's
        command, extra = production_gunicorn(
            port, spool_dir.with_name(f"{spool_dir.name}-prom")
        )
        env.update(extra)
    server = start_detached(command, env)
    acknowledged: set[str] = set()
    failures = 0
    lock = threading.Lock()
    stop = threading.Event()
    row = demo_rows(1)[0]

    def load() -> None:
        nonlocal failures
        with httpx2.Client(
            timeout=10,
            trust_env=False,
            headers={"Host": "durable.test", "Authorization": f"Api-Key {key}"},
        ) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"http://127.0.0.1:{port}/api/v1/groups/{DEMO_GROUP}/predict/",
                        json={"inputs": row},
                    )
                except httpx2.HTTPError:
                    with lock:
                        failures += 1
                    time.sleep(0.05)
                    continue
                with lock:
                    if response.status_code == 200:
                        acknowledged.add(response.json()["request_id"])
                    else:
                        failures += 1

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for the server and its first answer
            try:
                httpx2.get(
                    f"http://127.0.0.1:{port}/healthz", timeout=1, trust_env=False
                )
                break
            except httpx2.HTTPError:
                time.sleep(0.2)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = [worker.pid for worker in psutil.Process(server.pid).children()]
        for pid in killed:
            os.kill(pid, signal.SIGKILL)  # mid-traffic, no goodbye
        orphans = [
            path
            for path in spool_dir.glob("*.spool")
            if any(f".{pid}." in path.name for pid in killed)
        ]
        assert bool(orphans) == (mode != "direct")  # the killed worker's own file
        if mode == "spool, drain process":  # the worker and the drain process
            assert len(killed) == 2 and all(".relay." in p.name for p in orphans)
        before = len(acknowledged)
        while len(acknowledged) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # the master starts a new worker; traffic resumes
        respawned = [worker.pid for worker in psutil.Process(server.pid).children()]
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        if mode != "direct":  # the killed worker's file is adopted, or followed
            while not acknowledged <= logged() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        stop.set()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    parent = f"--parent={server.pid}"  # the drain process stopped with its server
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if parent in (p.info["cmdline"] or [])
    ]
    return acknowledged, killed, respawned
