"""The spool's drain process (`drain_inference_spool --follow`) ends by itself when the
server that started it is gone without stopping it (a kill -9 of gunicorn's master)."""

from __future__ import annotations

import subprocess

import psutil
import pytest

from apps.inference.spool import _drain_process_runs
from tests.servers import until

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
        # It took the directory's lock (or died, which fails below).
        until(lambda: _drain_process_runs(tmp_path) or not drain.is_running(), 30)
        assert _drain_process_runs(tmp_path)

        server.kill()  # no goodbye
        server.wait(timeout=10)
        drain.wait(timeout=15)  # psutil.TimeoutExpired if it stayed

        assert not _drain_process_runs(tmp_path)
    finally:
        if drain.is_running():
            drain.kill()
        server.kill()
