"""Provider fine-tuning against a local server speaking OpenAI's files and
fine_tuning.jobs endpoints, with their JSON shapes and a state progression."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django_tenants.utils import schema_context
from werkzeug import Request, Response

from apps.jobs.models import Job
from apps.jobs.tasks import job_run
from apps.providers.services import provider_create
from apps.registry.models import ModelVersion
from tests.jobs.conftest import upload

BASE = "gpt-4o-mini-2024-07-18"
TUNED = "ft:gpt-4o-mini-2024-07-18:org-test::abc123"


class FakeFineTuning:
    """One provider job moving validating_files → queued → running → `end` (one step
    per status read), with metric events on the way."""

    def __init__(self, end: str = "succeeded") -> None:
        self.end = end
        self.progression = ["validating_files", "queued", "running", "running", end]
        self.reads = 0
        self.files: list[bytes] = []
        self.creates: list[dict[str, Any]] = []
        self.cancelled = False

    def job(self) -> dict[str, Any]:
        status = (
            "cancelled"
            if self.cancelled
            else self.progression[
                min(max(self.reads - 1, 0), len(self.progression) - 1)
            ]
        )
        done = status in ("succeeded", "failed", "cancelled")
        return {
            "id": "ftjob-abc123",
            "object": "fine_tuning.job",
            "created_at": 1_700_000_000,
            "finished_at": 1_700_000_600 if done else None,
            "model": BASE,
            "fine_tuned_model": TUNED if status == "succeeded" else None,
            "organization_id": "org-test",
            "result_files": [],
            "status": status,
            "validation_file": None,
            "training_file": "file-train1",
            "hyperparameters": {
                "n_epochs": 2,
                "batch_size": 1,
                "learning_rate_multiplier": 1.8,
            },
            "trained_tokens": 4321 if status == "succeeded" else None,
            "error": (
                {
                    "code": "invalid_training_file",
                    "message": "Line 3: messages must end with an assistant turn.",
                    "param": "training_file",
                }
                if status == "failed"
                else None
            ),
            "seed": 42,
        }

    def events(self) -> dict[str, Any]:
        data = [
            {
                "id": "ftevent-1",
                "object": "fine_tuning.job.event",
                "created_at": 1_700_000_001,
                "level": "info",
                "message": "Validating training file: file-train1",
                "data": {},
                "type": "message",
            }
        ]
        for step in range(1, min(self.reads - 2, 2) + 1):
            data.append(
                {
                    "id": f"ftevent-step{step}",
                    "object": "fine_tuning.job.event",
                    "created_at": 1_700_000_100 + step,
                    "level": "info",
                    "message": f"Step {step}/2: training loss={1.0 / step:.2f}",
                    "data": {"step": step, "train_loss": 1.0 / step, "total_steps": 2},
                    "type": "metrics",
                }
            )
        return {"object": "list", "data": list(reversed(data)), "has_more": False}

    def handle(self, request: Request) -> Response:
        path = request.path
        if request.method == "POST" and path == "/v1/files":
            self.files.append(request.files["file"].read())
            body: dict[str, Any] = {
                "id": "file-train1",
                "object": "file",
                "bytes": len(self.files[-1]),
                "created_at": 1_700_000_000,
                "filename": request.files["file"].filename,
                "purpose": "fine-tune",
                "status": "processed",
            }
        elif request.method == "POST" and path == "/v1/fine_tuning/jobs":
            self.creates.append(json.loads(request.data))
            body = self.job()
        elif path == "/v1/fine_tuning/jobs/ftjob-abc123/events":
            body = self.events()
        elif request.method == "POST" and path.endswith("/cancel"):
            self.cancelled = True
            body = self.job()
        elif path == "/v1/fine_tuning/jobs/ftjob-abc123":
            self.reads += 1
            body = self.job()
        else:
            return Response("not found", status=404)
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def fake(httpserver):  # type: ignore[no-untyped-def]
    def install(end: str = "succeeded") -> FakeFineTuning:
        server = FakeFineTuning(end)
        httpserver.expect_request("").respond_with_handler(server.handle)
        return server

    return install


@pytest.fixture(autouse=True)
def _fast_polling(settings):  # type: ignore[no-untyped-def]
    settings.JOB_FINE_TUNE_POLL_SECONDS = 0.01
    settings.JOB_FINE_TUNE_POLL_MAX_SECONDS = 0.02


JSONL = "\n".join(
    json.dumps(
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
    )
    for i in range(12)
).encode()


def _create(tenant, make_user, api_client, httpserver) -> tuple[Any, int]:  # type: ignore[no-untyped-def]
    client = api_client(tenant, user=make_user(tenant, "editor"))
    with schema_context("alpha"):
        provider = provider_create(
            actor="test",
            name="openai-fake",
            kind="openai",
            base_url=httpserver.url_for("/v1"),
            api_key="sk-test-0123456789",
        )
    dataset = client.post(
        "/api/v1/datasets/", {"file": upload(JSONL, "chat.jsonl")}, format="multipart"
    ).json()
    assert dataset["format"] == "jsonl" and dataset["row_count"] == 12
    response = client.post(
        "/api/v1/jobs/",
        {
            "kind": "provider_fine_tune",
            "dataset": dataset["id"],
            "provider": provider.pk,
            "base_model": BASE,
            "hyperparameters": {"n_epochs": 2},
            "model_name": "support-bot",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return client, response.json()["id"]


def _run_until_done(job_id: int) -> Job:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job_run(job_id)
        job = Job.objects.get(pk=job_id)
        if job.status in Job.TERMINAL:
            return job
    raise AssertionError("the fine-tune job did not finish")


def test_fine_tune_mirrors_progress_and_registers_the_tuned_model(
    tenant_a, make_user, api_client, httpserver, fake
):
    server = fake("succeeded")
    _, job_id = _create(tenant_a, make_user, api_client, httpserver)
    with schema_context("alpha"):
        job = _run_until_done(job_id)
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert job.external_id == "ftjob-abc123"
        version = job.result_version
        assert version.source == ModelVersion.Source.FINE_TUNE
        assert version.external_id == TUNED
        assert version.provider.name == "openai-fake"
        assert version.model.name == "support-bot"
        assert version.lineage["provider_job_id"] == "ftjob-abc123"
        assert version.lineage["trained_tokens"] == 4321
        messages = [e.message for e in job.events.all()]
        assert "Validating training file: file-train1" in messages
        assert "Step 2/2: training loss=0.50" in messages
        assert messages.count("Step 1/2: training loss=1.00") == 1  # mirrored once
        assert [p["value"] for p in job.metric_history] == [1.0, 0.5]
    assert server.files == [JSONL]
    assert server.creates == [
        {
            "model": BASE,
            "training_file": "file-train1",
            "hyperparameters": {"n_epochs": 2},
        }
    ]


def test_long_fine_tune_yields_and_resumes_without_a_second_provider_job(
    tenant_a, make_user, api_client, httpserver, fake, settings
):
    settings.JOB_FINE_TUNE_TASK_SECONDS = 0  # one poll per task, then back to queue
    server = fake("succeeded")
    _, job_id = _create(tenant_a, make_user, api_client, httpserver)
    with schema_context("alpha"):
        job = _run_until_done(job_id)
    assert job.status == "succeeded"
    assert job.attempts == 1  # yielding spends no attempt
    assert len(server.creates) == 1 and len(server.files) == 1
    assert server.reads == 5


def test_provider_failure_fails_the_job_with_its_reason(
    tenant_a, make_user, api_client, httpserver, fake
):
    fake("failed")
    _, job_id = _create(tenant_a, make_user, api_client, httpserver)
    with schema_context("alpha"):
        job = _run_until_done(job_id)
        assert job.status == "failed"
        assert job.error_code == "provider_invalid_training_file"
        assert job.error_message == "Line 3: messages must end with an assistant turn."
        assert job.result_version is None
        assert not ModelVersion.objects.filter(lineage__job_id=job_id).exists()


def test_cancel_reaches_the_provider(
    tenant_a, make_user, api_client, httpserver, fake, settings
):
    settings.JOB_FINE_TUNE_TASK_SECONDS = 0
    server = fake("succeeded")
    client, job_id = _create(tenant_a, make_user, api_client, httpserver)
    with schema_context("alpha"):
        assert job_run(job_id) == "yielded"
    response = client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.json()["status"] == "cancelling"
    with schema_context("alpha"):
        assert job_run(job_id) == "skipped"
        job = Job.objects.get(pk=job_id)
        assert job.status == "cancelled"
        assert "Provider job ftjob-abc123 cancelled." in [
            e.message for e in job.events.all()
        ]
    assert server.cancelled


def test_fine_tune_config_errors_name_the_field(
    tenant_a, make_user, api_client, httpserver
):
    client = api_client(tenant_a, user=make_user(tenant_a, "editor"))
    dataset = client.post(
        "/api/v1/datasets/", {"file": upload(JSONL, "chat.jsonl")}, format="multipart"
    ).json()
    response = client.post(
        "/api/v1/jobs/",
        {"kind": "provider_fine_tune", "dataset": dataset["id"], "provider": 999},
        format="json",
    )
    assert response.json()["error"]["fields"] == {"provider": ["Unknown provider."]}
    response = client.post(
        "/api/v1/jobs/", {"dataset": dataset["id"], "target": "x"}, format="json"
    )
    assert response.json()["error"]["fields"] == {"dataset": ["A CSV dataset."]}
    bad = client.post(
        "/api/v1/datasets/",
        {"file": upload(b'{"messages": []}\n' * 12, "bad.jsonl")},
        format="multipart",
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "Line 1 has no `messages` list."
