"""Production settings with deploy/example.env: `check --deploy` is clean, and
gunicorn serves the app and whitenoise's collected static files."""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.servers import free_port, wait_until_serving

from .conftest import MANAGE, PYTHON, database_url

ROOT = Path(MANAGE).parent


def production_env(**extra: str) -> dict[str, str]:
    """deploy/example.env with throwaway secrets filled in."""
    values = _read(ROOT / "deploy" / "example.env")
    values.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        METRICS_TOKEN=secrets.token_urlsafe(16),
    )
    base = {k: v for k, v in os.environ.items() if k not in values}
    return {**base, **values, **extra}


def _read(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def test_example_env_names_every_required_production_variable():
    values = _read(ROOT / "deploy" / "example.env")
    for name in (
        "SECRET_KEY",
        "FIELD_ENCRYPTION_KEYS",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
    ):
        assert name in values
    assert values["SECRET_KEY"] == "" and values["FIELD_ENCRYPTION_KEYS"] == ""
    assert values["DJANGO_SETTINGS_MODULE"] == "config.settings.production"


def test_check_deploy_passes_with_the_example_env():
    done = subprocess.run(
        [PYTHON, MANAGE, "check", "--deploy", "--fail-level", "WARNING"],
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_production_refuses_to_start_without_secrets():
    env = production_env()
    env["SECRET_KEY"] = ""
    done = subprocess.run(
        [PYTHON, MANAGE, "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "SECRET_KEY and FIELD_ENCRYPTION_KEYS must be set" in done.stderr


@pytest.mark.worker
def test_gunicorn_serves_production_settings_and_static_files(
    django_db_setup, tmp_path
):
    """What `make serve` runs: collectstatic, then gunicorn with the repo's config."""
    port = free_port()
    # Production settings with STATIC_ROOT in tmp_path: the checkout's staticfiles/
    # is left alone (other test processes' whitenoise may be scanning it).
    static_root = tmp_path / "staticfiles"
    (tmp_path / "ops_production_settings.py").write_text(
        "from config.settings.production import *  # noqa\n"
        f"STATIC_ROOT = {str(static_root)!r}\n"
    )
    env = production_env(
        DJANGO_SETTINGS_MODULE="ops_production_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        DATABASE_URL=database_url(),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
        ALLOWED_HOSTS="127.0.0.1,.test",
    )
    (tmp_path / "prom").mkdir()
    collected = subprocess.run(
        [PYTHON, MANAGE, "collectstatic", "--noinput"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr
    manifest = static_root / "staticfiles.json"
    assert manifest.exists()
    proc = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "-c",
            str(ROOT / "config" / "gunicorn.conf.py"),
        ],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_serving(port, proc)
        # HTTPS comes from the proxy: plain http is redirected, forwarded https is not.
        status, headers, _ = _get(port, "/accounts/login/", "alpha.test")
        assert status == 301 and headers["location"].startswith("https://")
        status, headers, body = _get(
            port, "/static/admin/css/base.css", "alpha.test", forwarded=True
        )
        assert status == 200, body[:200]
        assert "max-age" in headers.get("cache-control", "")
        status, headers, _ = _get(
            port, "/accounts/login/", "alpha.test", forwarded=True
        )
        assert status == 200
        assert headers["strict-transport-security"].startswith("max-age=31536000")
        assert "secure" in headers.get("set-cookie", "").lower()
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _get(
    port: int, path: str, host: str, forwarded: bool = False
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host, "Connection": "close"}
    if forwarded:
        headers["X-Forwarded-Proto"] = "https"
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body
