"""Real servers the tests start as subprocesses: a free loopback port and the
gunicorn command line serving the project's WSGI application."""

from __future__ import annotations

import socket
import sys


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
