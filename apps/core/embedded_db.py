"""The embedded PostgreSQL used when DATABASE_URL is unset.

A `pgserver` cluster lives in `<project>/.pgdata` and listens on a Unix socket only.
This module has no Django imports so that the Makefile and the test session can
start and stop the cluster before Django is configured:

    python -m apps.core.embedded_db start|stop|status|url
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = Path(os.environ.get("MODELHUB_PGDATA", BASE_DIR / ".pgdata")).resolve()


def database_url(name: str = "postgres") -> str:
    """The libpq URL of the embedded cluster (socket in DATA_DIR, user postgres)."""
    return f"postgres://postgres@/{name}?host={DATA_DIR}"


def _postmaster_pid() -> int | None:
    pidfile = DATA_DIR / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by the unprivileged user pgserver runs it as
    return pid


def is_running() -> bool:
    return _postmaster_pid() is not None and (DATA_DIR / ".s.PGSQL.5432").exists()


def start() -> str:
    """Start the cluster if it is not running (initialising it on first use)."""
    if is_running():
        return database_url()
    import pgserver  # heavy-ish; only needed here

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `stop()` ends it.
    pgserver.get_server(DATA_DIR, cleanup_mode=None)
    for _ in range(100):
        if is_running():
            break
        time.sleep(0.1)
    else:  # pragma: no cover - reported to the operator as is
        raise RuntimeError(f"embedded PostgreSQL did not start in {DATA_DIR}")
    return database_url()


def stop(timeout: float = 15.0) -> bool:
    """Fast shutdown (SIGINT to the postmaster); True if a server was stopped."""
    pid = _postmaster_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _postmaster_pid() is None:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGQUIT)
    return True


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        print(f"embedded PostgreSQL running: {start()}")
    elif command == "stop":
        print(
            "embedded PostgreSQL stopped"
            if stop()
            else "embedded PostgreSQL not running"
        )
    elif command == "status":
        running = is_running()
        state = f"running (pid {_postmaster_pid()})" if running else "stopped"
        print(f"embedded PostgreSQL in {DATA_DIR}: {state}")
        return 0 if running else 3
    elif command == "url":
        print(database_url())
    else:
        print(f"usage: {argv[0]} start|stop|status|url", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
