"""Datasets and jobs through the API: validation names the field, roles, tenants."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Dataset, Job
from tests.jobs.conftest import breast_cancer_csv, diabetes_csv, tiny_csv, upload


@pytest.fixture
def editor(tenant_a, make_user, api_client):  # type: ignore[no-untyped-def]
    return api_client(tenant_a, user=make_user(tenant_a, "editor"))


def _dataset(tenant, data: bytes, name: str = "data") -> Dataset:  # type: ignore[no-untyped-def]
    with schema_context(tenant.schema_name):
        return dataset_create(file=upload(data), name=name, actor="test")


def test_upload_infers_schema_and_candidate_targets(editor):
    response = editor.post(
        "/api/v1/datasets/",
        {"file": upload(diabetes_csv(), "../../etc/diab.csv"), "name": "diabetes"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["row_count"] == 442
    assert body["column_count"] == 12
    assert body["original_name"] == "diab.csv"
    columns = {c["name"]: c for c in body["columns"]}
    assert columns["band"] == {
        "name": "band",
        "type": "string",
        "missing": 0,
        "unique": 2,
    }
    assert columns["bmi"]["type"] == "number"
    targets = {c["name"]: c["problem_type"] for c in body["candidate_targets"]}
    assert targets["band"] == "classification"
    assert targets["target"] == "regression"
    assert len(body["preview"]) == 10
    assert len(body["sha256"]) == 64
    with schema_context("alpha"):
        stored = Dataset.objects.get(pk=body["id"])
        assert ".." not in stored.path and stored.path.startswith("datasets/")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00\x01binary", "binary"),
        (tiny_csv(5), "at least 10 rows"),
        (b"only\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n", "two columns"),
    ],
)
def test_bad_upload_is_400_naming_file(editor, data, message):
    response = editor.post(
        "/api/v1/datasets/", {"file": upload(data)}, format="multipart"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "file" in error["fields"]
    assert message in error["message"]


def test_upload_over_size_limit_is_refused(editor, settings):
    settings.DATASET_MAX_BYTES = 100
    response = editor.post(
        "/api/v1/datasets/", {"file": upload(tiny_csv(50))}, format="multipart"
    )
    assert response.status_code == 400
    assert "limit of 100 bytes" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"target": "nope"}, "target", "Unknown column 'nope'"),
        (
            {"target": "band", "problem_type": "regression"},
            "target",
            "not numeric",
        ),
        (
            {"target": "target", "hyperparameters": {"learning_rate": 5}},
            "hyperparameters.learning_rate",
            "at most 1",
        ),
        (
            {"target": "target", "hyperparameters": {"n_estimators": 0}},
            "hyperparameters.n_estimators",
            "at least 1",
        ),
        (
            {"target": "target", "hyperparameters": {"depth": 3}},
            "hyperparameters.depth",
            "Unknown for gradient_boosting",
        ),
        (
            {"target": "target", "features": ["band"]},
            "features",
            "not numeric",
        ),
        (
            {"target": "band", "algorithm": "linear_regression"},
            "algorithm",
            "does not do classification",
        ),
        ({"target": "target", "validation_split": 0.9}, "validation_split", "0.5"),
    ],
)
def test_bad_config_is_400_naming_the_field(editor, tenant_a, payload, field, message):
    dataset = _dataset(tenant_a, diabetes_csv())
    response = editor.post(
        "/api/v1/jobs/", {"dataset": dataset.pk, **payload}, format="json"
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert message in " ".join(error["fields"][field])
    with schema_context("alpha"):
        assert Job.objects.count() == 0


def test_too_few_rows_is_400_naming_dataset(editor, tenant_a):
    dataset = _dataset(tenant_a, tiny_csv(15))
    response = editor.post(
        "/api/v1/jobs/", {"dataset": dataset.pk, "target": "label"}, format="json"
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields["dataset"] == [
        "Too few rows: 15 with a target value; training needs at least 20."
    ]


def test_unknown_dataset_and_fine_tune_without_dataset_are_400(editor, tenant_a):
    response = editor.post(
        "/api/v1/jobs/", {"dataset": 999999, "target": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"dataset": ["Unknown dataset."]}
    response = editor.post(
        "/api/v1/jobs/",
        {"kind": "provider_fine_tune", "target": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert "dataset" in response.json()["error"]["fields"]


def test_create_queues_job_with_clean_config_audited_and_idempotent(
    editor, tenant_a, django_capture_on_commit_callbacks
):
    dataset = _dataset(tenant_a, breast_cancer_csv())
    payload = {
        "dataset": dataset.pk,
        "target": "target",
        "algorithm": "random_forest",
        "hyperparameters": {"n_estimators": "20"},
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = editor.post(
            "/api/v1/jobs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["config"]["problem_type"] == "classification"
    assert body["config"]["hyperparameters"] == {
        "n_estimators": 20,
        "max_depth": None,
        "min_samples_leaf": 1,
    }
    assert len(body["config"]["features"]) == 30
    assert len(callbacks) == 1  # one task, after commit
    again = editor.post(
        "/api/v1/jobs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    with schema_context("alpha"):
        assert Job.objects.count() == 1
        actions = list(
            AuditEvent.objects.filter(object_type="jobs.job", object_id=str(body["id"]))
            .order_by("pk")
            .values_list("action", flat=True)
        )
    assert actions == ["job.create", "job.queued"]


def test_list_filters_by_status_and_events_endpoint(editor, tenant_a):
    dataset = _dataset(tenant_a, breast_cancer_csv())
    ids = []
    for _ in range(2):
        response = editor.post(
            "/api/v1/jobs/", {"dataset": dataset.pk, "target": "target"}, format="json"
        )
        ids.append(response.json()["id"])
    editor.post(f"/api/v1/jobs/{ids[0]}/cancel/")
    queued = editor.get("/api/v1/jobs/?status=queued").json()["results"]
    cancelled = editor.get("/api/v1/jobs/?status=cancelled").json()["results"]
    assert [j["id"] for j in queued] == [ids[1]]
    assert [j["id"] for j in cancelled] == [ids[0]]
    events = editor.get(f"/api/v1/jobs/{ids[0]}/events/").json()["results"]
    assert [e["message"] for e in events] == [
        "Job created.",
        "Queued.",
        "Cancelled before it ran.",
    ]
    assert editor.post(f"/api/v1/jobs/{ids[0]}/cancel/").status_code == 409
    retried = editor.post(f"/api/v1/jobs/{ids[0]}/retry/")
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"
    assert editor.post(f"/api/v1/jobs/{ids[1]}/retry/").status_code == 409


def test_viewer_reads_but_cannot_write(tenant_a, make_user, api_client):
    dataset = _dataset(tenant_a, breast_cancer_csv())
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    assert viewer.get("/api/v1/jobs/").status_code == 200
    assert viewer.get("/api/v1/datasets/").status_code == 200
    response = viewer.post(
        "/api/v1/jobs/", {"dataset": dataset.pk, "target": "target"}, format="json"
    )
    assert response.status_code == 403
    response = viewer.post(
        "/api/v1/datasets/", {"file": upload(tiny_csv(30))}, format="multipart"
    )
    assert response.status_code == 403
    assert api_client(tenant_a).get("/api/v1/jobs/").status_code in (401, 403)


def test_predict_key_cannot_use_jobs(tenant_a, make_key, api_client):
    _, key = make_key(tenant_a, scope="predict")
    assert api_client(tenant_a, key=key).get("/api/v1/jobs/").status_code == 403


def test_tenants_see_only_their_jobs_and_datasets(
    tenant_a, tenant_b, make_user, api_client
):
    dataset = _dataset(tenant_a, breast_cancer_csv())
    alpha = api_client(tenant_a, user=make_user(tenant_a, "editor"))
    beta = api_client(tenant_b, user=make_user(tenant_b, "editor"))
    job_id = alpha.post(
        "/api/v1/jobs/", {"dataset": dataset.pk, "target": "target"}, format="json"
    ).json()["id"]
    assert beta.get("/api/v1/jobs/").json()["results"] == []
    assert beta.get("/api/v1/datasets/").json()["results"] == []
    assert beta.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert beta.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 404
    response = beta.post(
        "/api/v1/jobs/", {"dataset": dataset.pk, "target": "target"}, format="json"
    )
    assert response.status_code == 400  # beta has no such dataset
    with schema_context("alpha"):
        assert Job.objects.get(pk=job_id).status == "queued"
