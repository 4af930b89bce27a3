"""Real servers the tests start as subprocesses: a free loopback port, the
gunicorn command line serving the project's WSGI application, and a django-q2
cluster; and `until`, to wait for what they do."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def until(check: Callable[[], Any], seconds: float, poll: float = 0.05) -> Any:
    """Call `check` until it returns something true or `seconds` have passed;
    returns its last value (the caller asserts on it)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn_command(
    port: int, *, workers: int = 1, threads: int = 4, timeout: int = 30
) -> list[str]:
    """gunicorn on 127.0.0.1:<port> (gthread workers), as a subprocess argv."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        str(timeout),
    ]


def production_gunicorn(
    port: int, metrics_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """gunicorn with the production configuration (config/gunicorn.conf.py: its
    hooks, the spool's drain process among them) on 127.0.0.1:<port>, one worker of
    four threads: the command and the environment it needs."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "config" / "gunicorn.conf.py"),
    ]
    env = {
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
        "GUNICORN_WARM_SECONDS": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    return command, env


def start_detached(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`command` from the project's directory in a process group of its own (so that
    a test can kill it and its children at once), its output discarded."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def qcluster_start(env: dict[str, str]) -> subprocess.Popen:
    """`manage.py qcluster`, detached (`start_detached`)."""
    return start_detached([sys.executable, str(ROOT / "manage.py"), "qcluster"], env)


def wait_until_serving(
    port: int,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    seconds: float = 60,
) -> None:
    """Until `GET /healthz` on 127.0.0.1:<port> answers 200; fails the test when the
    server process exits first or the time is up (with the tail of its log)."""

    def tail() -> str:
        return (
            f": {log.read_text()[-2000:]}" if log is not None and log.exists() else ""
        )

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the server exited{tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer within {seconds:.0f} s{tail()}")
