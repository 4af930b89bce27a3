"""Real servers the tests start as subprocesses: a free loopback port, the
gunicorn command line serving the project's WSGI application, and a django-q2
cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def qcluster_start(env: dict[str, str]) -> subprocess.Popen:
    """`manage.py qcluster` in a process group of its own (so that a test can kill
    the whole cluster at once), its output discarded."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
