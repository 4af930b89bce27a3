"""The Jobs pages: live list, detail, the Build-a-Model wizard, cancel and retry."""

from __future__ import annotations

import json

from django_tenants.utils import schema_context

from apps.jobs import services
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Dataset, Job
from apps.jobs.tasks import job_run
from tests.jobs.conftest import breast_cancer_csv, upload


def _editor(tenant, make_user, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant, make_user(tenant, "editor"))


def test_wizard_upload_target_algorithm_review_submit(tenant_a, make_user, page_client):
    client = _editor(tenant_a, make_user, page_client)
    page = client.get("/jobs/new/")
    assert page.status_code == 200
    assert b"Upload and continue" in page.content
    response = client.post(
        "/jobs/new/", {"file": upload(breast_cancer_csv(), "cancer.csv")}
    )
    assert response.status_code == 302
    with schema_context("alpha"):
        dataset = Dataset.objects.get()
    assert response["Location"] == f"/jobs/new/?dataset={dataset.pk}"
    target_step = client.get(response["Location"])
    assert b"Target column" in target_step.content
    assert b"mean_radius" in target_step.content
    algorithm_step = client.get(
        "/jobs/new/", {"dataset": dataset.pk, "target": "target"}
    )
    assert b"Gradient boosting hyperparameters" in algorithm_step.content
    query = {
        "dataset": dataset.pk,
        "target": "target",
        "algorithm_step": "1",
        "algorithm": "gradient_boosting",
        "gradient_boosting.n_estimators": "25",
        "gradient_boosting.learning_rate": "0.2",
        "gradient_boosting.max_depth": "2",
        "gradient_boosting.subsample": "1",
        "random_forest.n_estimators": "999999",  # another algorithm's: ignored
        "validation_split": "0.25",
        "seed": "7",
        "model_name": "wizard-model",
    }
    review = client.get("/jobs/new/", query)
    assert review.status_code == 200
    assert b"Start training" in review.content
    config = review.context["config"]
    assert config["hyperparameters"] == {
        "n_estimators": 25,
        "learning_rate": 0.2,
        "max_depth": 2,
        "subsample": 1.0,
    }
    submitted = client.post(
        "/jobs/new/", {"dataset": dataset.pk, "config": json.dumps(config)}
    )
    with schema_context("alpha"):
        job = Job.objects.get()
    assert submitted.status_code == 302
    assert submitted["Location"] == f"/jobs/{job.pk}/"
    assert job.status == "queued"
    assert job.config["seed"] == 7 and job.config["validation_split"] == 0.25


def test_wizard_review_names_a_bad_hyperparameter(tenant_a, make_user, page_client):
    client = _editor(tenant_a, make_user, page_client)
    with schema_context("alpha"):
        dataset = dataset_create(file=upload(breast_cancer_csv()), actor="test")
    review = client.get(
        "/jobs/new/",
        {
            "dataset": dataset.pk,
            "target": "target",
            "algorithm_step": "1",
            "algorithm": "gradient_boosting",
            "gradient_boosting.learning_rate": "7",
        },
    )
    assert review.status_code == 200
    assert b"Start training" not in review.content
    assert "hyperparameters.learning_rate" in review.context["errors"]


def test_list_polls_while_active_and_stops_when_done(tenant_a, make_user, page_client):
    client = _editor(tenant_a, make_user, page_client)
    with schema_context("alpha"):
        dataset = dataset_create(file=upload(breast_cancer_csv()), actor="test")
        job, _ = services.job_create(
            actor="test",
            dataset=dataset,
            config={"target": "target", "hyperparameters": {"n_estimators": 10}},
        )
    page = client.get("/jobs/")
    assert page.status_code == 200
    assert b'hx-trigger="every 2s"' in page.content
    assert b"<progress" in page.content
    partial = client.get("/jobs/", HTTP_HX_REQUEST="true")
    assert partial.content.lstrip().startswith(b'<tbody id="job-rows"')
    assert b"<html" not in partial.content
    with schema_context("alpha"):
        job_run(job.pk)
        job.refresh_from_db()
    partial = client.get("/jobs/", HTTP_HX_REQUEST="true")
    assert b"every 2s" not in partial.content
    assert b"succeeded" in partial.content
    assert f"{job.result_version.model.name} v1".encode() in partial.content
    detail = client.get(f"/jobs/{job.pk}/")
    assert b"Holdout metrics" in detail.content
    assert b"Confusion matrix" in detail.content
    assert b"<polyline" in detail.content
    assert b"Registered " in detail.content


def test_cancel_and_retry_buttons(tenant_a, make_user, page_client):
    client = _editor(tenant_a, make_user, page_client)
    with schema_context("alpha"):
        dataset = dataset_create(file=upload(breast_cancer_csv()), actor="test")
        job, _ = services.job_create(
            actor="test", dataset=dataset, config={"target": "target"}
        )
    detail = client.get(f"/jobs/{job.pk}/")
    assert f'action="/jobs/{job.pk}/cancel/"'.encode() in detail.content
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 302
    detail = client.get(f"/jobs/{job.pk}/")
    assert f'action="/jobs/{job.pk}/retry/"'.encode() in detail.content
    assert b"hx-trigger" not in detail.content
    client.post(f"/jobs/{job.pk}/retry/")
    with schema_context("alpha"):
        job.refresh_from_db()
    assert job.status == "queued"


def test_viewer_sees_jobs_without_buttons_and_no_wizard(
    tenant_a, make_user, page_client
):
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))
    with schema_context("alpha"):
        dataset = dataset_create(file=upload(breast_cancer_csv()), actor="test")
        job, _ = services.job_create(
            actor="test", dataset=dataset, config={"target": "target"}
        )
    assert viewer.get("/jobs/").status_code == 200
    assert b"Build a model" not in viewer.get("/jobs/").content
    assert b"/cancel/" not in viewer.get(f"/jobs/{job.pk}/").content
    assert viewer.get("/jobs/new/").status_code == 403
    assert viewer.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert page_client(tenant_a).get("/jobs/").status_code == 302


def test_nav_shows_jobs(tenant_a, make_user, page_client):
    client = _editor(tenant_a, make_user, page_client)
    assert b'href="/jobs/"' in client.get("/jobs/").content
