"""The spool's drain process under gunicorn (INFERENCE_SPOOL_HOST_DRAIN).

gunicorn's master runs `manage.py drain_inference_spool --follow` from when_ready on,
starts it again if it ends, and stops it in on_exit, after the workers. The state
lives here, not in config/gunicorn.conf.py, which gunicorn executes again on a reload
(SIGHUP): the master's on_exit must still find the process it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings

# A process that keeps ending is started again after 1, 2, 4 ... seconds, at most this.
RESTART_MAX_SECONDS = 30.0
# One that ran at least this long is started again after a second.
RAN_WELL_SECONDS = 60.0


def command(parent: int, directory: Path | None = None) -> list[str]:
    """The drain process's command line: it follows `directory` (default
    INFERENCE_SPOOL_DIR) and stops when `parent` is gone."""
    return [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        "drain_inference_spool",
        "--follow",
        f"--parent={parent}",
        *([f"--dir={directory}"] if directory is not None else []),
    ]


def wanted() -> bool:
    return (
        settings.INFERENCE_LOG_MODE == "spool" and settings.INFERENCE_SPOOL_HOST_DRAIN
    )


class DrainProcess:
    """Runs the drain process from a thread of the master; `stop` ends both."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # stopping vs starting a process
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Any) -> None:
        with self.lock:
            if self.thread is not None or self.stopped.is_set():
                return
            self.thread = threading.Thread(
                target=self._supervise, args=(log,), name="spool-drain", daemon=True
            )
            self.thread.start()

    def _supervise(self, log: Any) -> None:
        argv = command(os.getpid())
        delay = 1.0
        while True:
            with self.lock:
                if self.stopped.is_set():
                    return
                try:
                    # A session of its own: a signal to the server's process group
                    # (Ctrl-C, killpg) stops the workers first; on_exit then stops
                    # this process, which copies what they appended up to their exit.
                    self.proc = subprocess.Popen(argv, start_new_session=True)  # noqa: S603
                except OSError as exc:
                    self.proc = None
                    log.error(
                        "the inference spool's drain process did not start: %s", exc
                    )
            started = time.monotonic()
            if self.proc is not None:
                self.proc.wait()
            if time.monotonic() - started >= RAN_WELL_SECONDS:
                delay = 1.0
            if self.stopped.is_set():
                return
            log.warning(
                "the inference spool's drain process ended; starting it again in %.0f s",
                delay,
            )
            self.stopped.wait(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)  # if it ends again soon

    def stop(self) -> None:
        """Stop the process (it copies what is left first, for up to 10 s)."""
        with self.lock:
            self.stopped.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


drain_process = DrainProcess()
