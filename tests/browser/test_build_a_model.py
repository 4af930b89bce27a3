"""Build a Model: the wizard from a CSV upload to "Start training", then the job
page following the real worker's progress live until the model is registered."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, stop_process_group, subprocess_env
from tests.jobs.conftest import breast_cancer_csv
from tests.servers import qcluster_start

# One xdist worker runs them all: they share one server, tenant and browser.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

TREES = 400  # long enough for the page's 2 s polling to see the fit under way
MODEL = "browser-cancer"


@pytest.fixture
def worker(live: Any, django_db_blocker: Any) -> Iterator[subprocess.Popen]:
    """A real django-q2 cluster on the test database; it boots while the wizard is
    being filled in."""
    name = f"{live.slug}-worker"
    with django_db_blocker.unblock():
        env = {**subprocess_env(name), "Q_WORKERS": "1"}
    proc = qcluster_start(env)
    yield proc
    # Nothing of this tenant is left running: a graceful stop would only wait.
    with django_db_blocker.unblock():
        stop_process_group(proc, name, signal.SIGKILL)


def test_wizard_to_a_registered_model_with_live_progress(
    admin_page, live, worker, django_db_blocker, request
):
    from apps.jobs.models import Job

    page = admin_page
    page.goto(f"{live.url}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.get_by_role("link", name="Build a model").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Build a model")

    # 1. Upload the data.
    page.locator("input[name=file]").set_input_files(
        {"name": "cancer.csv", "mimeType": "text/csv", "buffer": breast_cancer_csv()}
    )
    page.locator("input[name=name]").fill("cancer")
    page.get_by_role("button", name="Upload and continue").click()
    expect(page.locator("main")).to_contain_text("569 rows, 31 columns")

    # 2. What to predict.
    page.get_by_label("Target column (what to predict)").select_option("target")
    page.get_by_role("button", name="Continue").click()

    # 3. How: gradient boosting with more trees than the default.
    expect(page.get_by_label("Algorithm")).to_have_value("gradient_boosting")
    page.locator("input[name='gradient_boosting.n_estimators']").fill(str(TREES))
    page.get_by_label("Model name").fill(MODEL)
    page.get_by_role("button", name="Review").click()

    # 4. Review and start.
    review = page.locator("dl.job-config")
    expect(review).to_contain_text("gradient_boosting")
    expect(review).to_contain_text(f"n_estimators={TREES}")
    expect(review).to_contain_text("classification")
    screenshot(page, f"{request.node.name}-review")
    page.get_by_role("button", name="Start training").click()
    expect(page.locator(".flash.success")).to_contain_text("queued.")

    # The page polls every 2 s: read what it shows until the job ends.
    status = page.locator("#job-status .job-status")
    bar = page.locator("#job-status progress")
    seen: list[tuple[str, int]] = []
    under_way = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = ((status.text_content() or "").strip(), int(bar.get_attribute("value")))
        if not seen or seen[-1] != state:
            seen.append(state)
            if state[0] == "running" and 0 < state[1] < 100 and not under_way:
                under_way = True
                screenshot(page, f"{request.node.name}-running")
        if state[0] in ("succeeded", "failed", "cancelled"):
            break
        page.wait_for_timeout(200)
    assert seen[-1] == ("succeeded", 100), seen
    # Live: the page showed the job under way, between queued and done.
    assert any(s == "running" and 0 < p < 100 for s, p in seen), seen

    result = page.locator("#job-status").get_by_role("link", name=f"{MODEL} v1")
    expect(result).to_be_visible()
    expect(page.locator("table.job-metrics")).to_contain_text("accuracy")
    expect(page.locator("svg.job-chart")).to_be_visible()
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    with django_db_blocker.unblock(), schema_context(live.slug):
        job = Job.objects.select_related("result_version__model").get(pk=job_id)
        assert job.status == "succeeded"
        assert job.result_version.model.name == MODEL
        assert job.result_version.lineage["job_id"] == job.pk
        accuracy = job.result_version.metadata["performance"]["accuracy"]
    assert accuracy > 0.9
    shown = page.locator("table.job-metrics tr", has_text="accuracy").locator("td")
    assert float(shown.text_content()) == pytest.approx(accuracy, abs=5e-5)

    result.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(MODEL)
