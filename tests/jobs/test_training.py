"""The trainer and the job lifecycle in-process: metrics, SHAP, one version, cancel,
the reaper. (The real worker path is in test_worker.py.)"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.groups.models import Membership
from apps.jobs import services
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Job
from apps.jobs.tasks import job_run
from apps.jobs.trainers.sklearn import Reporter, Stop
from apps.registry.artifacts import artifact_load, artifact_read_verified
from apps.registry.models import ModelArtifact, ModelVersion
from tests.jobs.conftest import breast_cancer_csv, diabetes_csv, upload


def _job(data: bytes, **config) -> Job:  # type: ignore[no-untyped-def]
    dataset = dataset_create(file=upload(data), name="data", actor="test")
    job, _ = services.job_create(actor="test", dataset=dataset, config=config)
    return job


def test_gradient_boosting_classification_registers_one_version(tenant_a):
    with schema_context("alpha"):
        job = _job(
            breast_cancer_csv(),
            target="target",
            algorithm="gradient_boosting",
            hyperparameters={"n_estimators": 30},
            model_name="cancer-gb",
        )
        assert job_run(job.pk) == "succeeded"
        job.refresh_from_db()
        assert job.status == "succeeded"
        assert job.progress == 100
        assert job.attempts == 1
        version = job.result_version
        assert version is not None
        assert version.source == ModelVersion.Source.TRAINING
        assert version.lineage["job_id"] == job.pk
        assert version.model.name == "cancer-gb"
        assert version.model.task_type == "classification"
        performance = version.metadata["performance"]
        assert set(performance) == {"accuracy", "precision", "recall", "f1", "auc"}
        assert performance["accuracy"] > 0.9
        assert performance["auc"] > 0.95
        assert job.metrics["confusion_matrix"]["labels"] == [0, 1]
        matrix = job.metrics["confusion_matrix"]["matrix"]
        assert sum(map(sum, matrix)) == 114  # 20% of 569 rows, held out
        importance = version.metadata["feature_importance"]
        assert len(importance) == 30
        assert all(v >= 0 for v in importance.values())
        assert max(importance.values()) > 0
        assert [f["name"] for f in version.input_schema][:2] == [
            "mean_radius",
            "mean_texture",
        ]
        assert [p["step"] for p in job.metric_history][-1] == 30
        artifacts = {a.role: a for a in version.artifacts.all()}
        assert set(artifacts) == {"model", "background"}
        model = artifact_load(artifacts["model"])
        assert type(model).__name__ == "GradientBoostingClassifier"
        background = json.loads(artifact_read_verified(artifacts["background"]))
        assert len(background) == 100
        assert set(background[0]) == {f["name"] for f in version.input_schema}
        messages = [e.message for e in job.events.all()]
        assert messages[0] == "Job created."
        assert "Attempt 1 of 3 started." in messages
        assert messages[-1] == "Registered cancer-gb v1."
        # The task delivered again (at-least-once) does nothing.
        assert job_run(job.pk) == "skipped"
        assert ModelVersion.objects.filter(lineage__job_id=job.pk).count() == 1


@pytest.mark.parametrize("algorithm", ["linear_regression", "random_forest"])
def test_regression_reports_mae_rmse_r2(tenant_a, algorithm):
    with schema_context("alpha"):
        job = _job(
            diabetes_csv(),
            target="target",
            features=["age", "bmi", "bp", "s1", "s5"],
            algorithm=algorithm,
            hyperparameters={"n_estimators": 40}
            if algorithm == "random_forest"
            else {},
        )
        assert job.config["problem_type"] == "regression"
        assert job_run(job.pk) == "succeeded"
        job.refresh_from_db()
        performance = job.result_version.metadata["performance"]
        assert set(performance) == {"mae", "rmse", "r2"}
        assert 0 < performance["mae"] <= performance["rmse"]
        assert 0.2 < performance["r2"] < 1
        assert set(job.result_version.metadata["feature_importance"]) == {
            "age",
            "bmi",
            "bp",
            "s1",
            "s5",
        }


def test_logistic_regression_joins_group_as_challenger(tenant_a):
    from apps.groups.services import group_create

    with schema_context("alpha"):
        group = group_create(name="Cancer", actor="test")
        job = _job(
            breast_cancer_csv(),
            target="target",
            algorithm="logistic_regression",
            group=group.slug,
        )
        assert job_run(job.pk) == "succeeded"
        job.refresh_from_db()
        member = Membership.objects.get(group=group)
        assert (member.version_id, member.role, member.weight) == (
            job.result_version_id,
            "challenger",
            0,
        )


def test_second_success_of_a_job_registers_nothing(tenant_a):
    with schema_context("alpha"):
        job = _job(breast_cancer_csv(), target="target")
        claimed = services.job_claim(job_id=job.pk)
        calls = []

        def register(locked):  # type: ignore[no-untyped-def]
            calls.append(locked.pk)
            from apps.registry.services import model_create, version_create

            model = model_create(name=f"m{len(calls)}", actor="test")
            return version_create(model=model, source="training", actor="test")

        first = services.job_succeed(
            job_id=job.pk, attempt=claimed.attempts, metrics={}, register=register
        )
        second = services.job_succeed(
            job_id=job.pk, attempt=claimed.attempts, metrics={}, register=register
        )
        assert first is not None and second is None
        assert calls == [job.pk]


def test_cancel_while_queued_and_while_running(tenant_a):
    with schema_context("alpha"):
        queued = _job(breast_cancer_csv(), target="target")
        services.job_cancel(job=queued, actor="test")
        queued.refresh_from_db()
        assert queued.status == "cancelled"
        assert job_run(queued.pk) == "skipped"

        running = _job(breast_cancer_csv(), target="target")
        claimed = services.job_claim(job_id=running.pk)
        services.job_cancel(job=running, actor="test")
        running.refresh_from_db()
        assert running.status == "cancelling"
        with pytest.raises(Stop):  # the trainer's next check
            Reporter(running.pk, claimed.attempts).beat(50, "fitting", force=True)
        assert services.job_mark_cancelled(job_id=running.pk, attempt=claimed.attempts)
        running.refresh_from_db()
        assert running.status == "cancelled"
        assert running.result_version is None


def test_reaper_requeues_then_fails_with_a_reason(
    tenant_a, django_capture_on_commit_callbacks
):
    with schema_context("alpha"):
        job = _job(breast_cancer_csv(), target="target")
        Job.objects.filter(pk=job.pk).update(max_attempts=2)
        for attempt in (1, 2):
            claimed = services.job_claim(job_id=job.pk)
            assert claimed.attempts == attempt
            later = timezone.now() + timedelta(seconds=claimed.lease_seconds + 1)
            with django_capture_on_commit_callbacks() as callbacks:
                counts = services.jobs_reap(now=later)
            job.refresh_from_db()
            if attempt == 1:
                assert counts == {"requeued": 1, "failed": 0, "cancelled": 0}
                assert job.status == "queued" and len(callbacks) == 1
                # The dead attempt's late report is ignored.
                assert not services.job_heartbeat(job_id=job.pk, attempt=1)
            else:
                assert counts == {"requeued": 0, "failed": 1, "cancelled": 0}
                assert job.status == "failed"
        assert job.error_code == "lease_expired"
        assert "no attempts left" in job.error_message


def test_live_lease_is_not_reaped(tenant_a):
    with schema_context("alpha"):
        job = _job(breast_cancer_csv(), target="target")
        services.job_claim(job_id=job.pk)
        assert services.jobs_reap() == {"requeued": 0, "failed": 0, "cancelled": 0}
        job.refresh_from_db()
        assert job.status == "running"


def test_tampered_dataset_fails_the_job_with_a_reason(tenant_a, settings):
    from pathlib import Path

    with schema_context("alpha"):
        job = _job(breast_cancer_csv(), target="target")
        path = Path(settings.MEDIA_ROOT) / "alpha" / job.dataset.path
        path.write_bytes(path.read_bytes() + b"\n")
        assert job_run(job.pk) == "failed"
        job.refresh_from_db()
        assert job.status == "failed"
        assert job.error_code == "tampered"
        assert ModelArtifact.objects.count() == 0


def test_reaper_enqueues_a_long_queued_job_again(
    tenant_a, django_capture_on_commit_callbacks
):
    with schema_context("alpha"):
        job = _job(breast_cancer_csv(), target="target")
        later = timezone.now() + timedelta(seconds=services.queued_stale_seconds() + 1)
        with django_capture_on_commit_callbacks() as callbacks:
            services.jobs_reap(now=later)
        assert len(callbacks) == 1
        job.refresh_from_db()
        assert job.status == "queued"
        assert job.events.last().message == "Still queued; asked a worker again."
        with django_capture_on_commit_callbacks() as callbacks:
            services.jobs_reap()  # fresh again: nothing to do
        assert callbacks == []
