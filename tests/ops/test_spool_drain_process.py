"""The spool's drain process (`drain_inference_spool --follow`) ends by itself when the
server that started it is gone without stopping it (a kill -9 of gunicorn's master)."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from apps.inference.spool import _drain_process_runs

from .conftest import MANAGE, PYTHON

LAUNCHER = """
import os, subprocess, sys
drain = subprocess.Popen(
    [sys.executable, sys.argv[1], "drain_inference_spool", "--follow",
     "--dir", sys.argv[2], f"--parent={os.getpid()}"],
    start_new_session=True,
)
print(drain.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.worker
def test_the_drain_process_ends_when_its_server_is_gone(process_env, tmp_path):
    server = subprocess.Popen(
        [PYTHON, "-c", LAUNCHER, MANAGE, str(tmp_path)],
        env=process_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    drain = psutil.Process(int(server.stdout.readline()))
    try:
        deadline = time.monotonic() + 30
        while not _drain_process_runs(tmp_path):  # it took the directory's lock
            assert time.monotonic() < deadline and drain.is_running()
            time.sleep(0.1)

        server.kill()  # no goodbye
        server.wait(timeout=10)
        drain.wait(timeout=15)  # psutil.TimeoutExpired if it stayed

        assert not _drain_process_runs(tmp_path)
    finally:
        if drain.is_running():
            drain.kill()
        server.kill()
