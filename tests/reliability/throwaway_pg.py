"""A PostgreSQL cluster of its own for a test that stops and starts its database:
pgserver's binaries, a data directory under /tmp (short, for the socket path), Unix
socket only. Never the cluster the test session itself uses."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import psycopg


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mh-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.socket_dir: Path | None = None
        # As root, pgserver runs the server as an unprivileged system user.
        self.user = "pgserver" if os.geteuid() == 0 else None

    def start(self) -> None:
        """The first start initialises the cluster (pgserver); later ones reuse it."""
        if self.socket_dir is None:
            with warnings.catch_warnings():
                # pgserver's lock lives in the user's runtime directory, /tmp when
                # XDG_RUNTIME_DIR is unset.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                import pgserver

            server = pgserver.get_server(self.data, cleanup_mode=None)
            self.socket_dir = server.get_postmaster_info().socket_dir
            assert self.socket_dir is not None
            return
        self._pg_ctl(
            "-w",
            "-t",
            "60",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.data / "log"),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back open transactions and closes sessions; `immediate`
        aborts every process, as a crash would (crash recovery on the next start)."""
        self._pg_ctl("-w", "-t", "60", "-m", mode, "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@/{database}?host={self.socket_dir}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(
            host=str(self.socket_dir), dbname=database, user="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def destroy(self) -> None:
        if self.socket_dir is not None:
            with contextlib.suppress(subprocess.CalledProcessError):  # not running
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.user,
            timeout=90,
        )
