"""Browser tests: Debian's Chromium driven by Playwright against a real gunicorn
server on a tenant host made for this run (demo content seeded, committed data).

One server, one browser and one tenant for the package's tests; each test gets a
fresh browser context. Every test leaves a full-page screenshot of where it ended
in var/test-artifacts/browser/<test-name>.png."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import schema_context

from tests.jobs.conftest import queue_cleanup
from tests.servers import free_port, gunicorn_command, wait_until_serving

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts" / "browser"
PASSWORD = "browser-horse-battery"
TRAFFIC = 32  # predictions sent before the analytics pages are read
LABELLED = 24  # of which this many get ground truth
EXPLAINED_EVERY = 4  # every 4th prediction asks for SHAP values inline


@dataclass
class Live:
    """The tenant and server the browser talks to."""

    slug: str
    host: str
    port: int
    admin_email: str
    group_id: int
    predict_key: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def http(self) -> httpx2.Client:
        return httpx2.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Host": self.host, "Authorization": f"Api-Key {self.predict_key}"},
            timeout=30,
            trust_env=False,
        )


def subprocess_env(application_name: str) -> dict[str, str]:
    """The environment of a server or worker process on the test database; its
    connections carry `application_name`."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
            f"&application_name={application_name}"
        ),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }


def stop_process_group(
    proc: subprocess.Popen, application_name: str, sig: int = signal.SIGTERM
) -> None:
    """Stop the process group, then wait (a little) until the database has let go
    of its sessions, so that the test database can be dropped at the end."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                [application_name],
            )
            if not cursor.fetchone()[0]:
                return
        time.sleep(0.05)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="package")
def live(
    chromium_path: str, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory
) -> Iterator[Live]:
    """A tenant of its own (unique slug: safe beside parallel runs) with the demo
    group, a predict key, and gunicorn serving it on a free port. Removed again
    when the package's last test is done, so no other test sees it."""
    from apps.accounts.services import api_key_create
    from apps.tenants.demo import seed_demo_content
    from apps.tenants.services import tenant_create

    slug = f"br{os.getpid()}{secrets.token_hex(3)}"
    host = f"{slug}.test"
    admin_email = f"admin@{host}"
    with django_db_blocker.unblock():
        env = subprocess_env(f"{slug}-web")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "gunicorn.log"
    # The server boots while the tenant is made: it finds tenants per request.
    with log.open("wb") as out:
        server = subprocess.Popen(
            gunicorn_command(port, threads=8, timeout=60),
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with django_db_blocker.unblock():
            tenant_create(
                slug=slug,
                name="Browser Org",
                admin_email=admin_email,
                domains=[host],
                admin_password=PASSWORD,
            )
            with schema_context(slug):
                group = seed_demo_content(actor="test")
                _, key = api_key_create(name="browser", scope="predict", actor="test")
        wait_until_serving(port, server, log)
        yield Live(
            slug=slug,
            host=host,
            port=port,
            admin_email=admin_email,
            group_id=group.pk,
            predict_key=key,
        )
    finally:
        with django_db_blocker.unblock():
            stop_process_group(server, f"{slug}-web")
            _tenant_remove(slug)


def _tenant_remove(slug: str) -> None:
    from apps.tenants.models import Organization
    from apps.tenants.services import tenant_delete

    queue_cleanup(slug)
    if Organization.objects.filter(schema_name=slug).exists():
        tenant_delete(slug=slug)
    shutil.rmtree(Path(settings.MEDIA_ROOT) / slug, ignore_errors=True)


@pytest.fixture(scope="package")
def traffic(live: Live, django_db_blocker: Any) -> Live:
    """Real predictions through the live server (some explained inline), ground
    truth for most of them, then the hourly rollups refreshed."""
    from apps.groups.models import ModelGroup
    from apps.groups.rollups import rollups_refresh
    from apps.tenants.demo import DEMO_GROUP, demo_labels, demo_rows

    rows, labels = demo_rows(TRAFFIC), demo_labels(TRAFFIC)
    feedback = []
    with live.http() as client:
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            answer = client.post(
                f"/api/v1/groups/{DEMO_GROUP}/predict/",
                json={
                    "inputs": row,
                    "routing_key": f"patient-{i}",
                    "explain": i % EXPLAINED_EVERY == 0,
                },
            )
            assert answer.status_code == 200, answer.text
            if i < LABELLED:
                feedback.append(
                    {"request_id": answer.json()["request_id"], "label": label}
                )
        sent = client.post(
            f"/api/v1/groups/{DEMO_GROUP}/feedback/", json={"items": feedback}
        )
        assert sent.status_code == 200, sent.text
    with django_db_blocker.unblock():
        # The sampled background explanations are not what these tests look at;
        # left queued, they would hold up the worker of the training test.
        queue_cleanup(live.slug)
        with schema_context(live.slug):
            rollups_refresh(group=ModelGroup.objects.get(pk=live.group_id))
    return live


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    """Chromium, with *.test resolving to 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the tests' own
    # database reads are plain synchronous code all the same.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=chromium_path,
                args=["--host-resolver-rules=MAP *.test 127.0.0.1"],
            )
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


def sign_in(page: Any, live: Live, password: str = PASSWORD) -> None:
    """Through the real login form."""
    page.goto(f"{live.url}/accounts/login/")
    page.get_by_label("Email").fill(live.admin_email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture(scope="package")
def signed_in_state(browser: Any, live: Live) -> dict[str, Any]:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, live)
    state = context.storage_state()
    context.close()
    return state


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG in var/test-artifacts/browser/."""
    path = artifact(name)
    # Clicking in a wide table scrolls the main column sideways; show its start.
    page.evaluate("document.querySelector('main')?.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def _page(browser: Any, request: Any, **options: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    context.set_default_timeout(15_000)
    # Assertions wait as long as actions: on a loaded machine (the rest of the suite
    # on the other worker) a lazily loaded panel can take more than expect's 5 s.
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        with contextlib.suppress(Exception):
            screenshot(page, request.node.name)
        context.close()


@pytest.fixture
def anonymous_page(browser: Any, request: Any) -> Iterator[Any]:
    """A page with no session; its last state is kept as a screenshot."""
    with _page(browser, request) as page:
        yield page


@pytest.fixture
def admin_page(
    browser: Any, signed_in_state: dict[str, Any], request: Any
) -> Iterator[Any]:
    """A page signed in as the tenant's admin; its last state is kept as a
    screenshot."""
    with _page(browser, request, storage_state=signed_in_state) as page:
        yield page
