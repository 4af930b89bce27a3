"""Training through a real django-q2 worker process, and a worker killed with
SIGKILL mid-training: the job ends (succeeded after a retry, or failed with a reason)
within lease + 60 s, never stuck, never with two versions."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings
from django_tenants.utils import schema_context

from apps.jobs import services
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Dataset, Job
from apps.registry.models import ModelVersion, RegisteredModel
from apps.tenants.services import tenant_create, tenant_delete
from tests.jobs.conftest import (
    assert_test_database,
    breast_cancer_csv,
    kill_worker,
    queue_cleanup,
    start_worker,
    upload,
)


def test_reaper_is_scheduled_every_minute(db):
    """(Also makes pytest-django set up the test database for this module.)"""
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="jobs: reap expired leases")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "apps.jobs.tasks.jobs_reap_all_tenants",
        "I",
        1,
    )


def _wait(job_id: int, until, timeout: float) -> Job:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.get(pk=job_id)
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.mark.worker
def test_real_worker_trains_and_registers_one_version(worker, django_db_blocker):
    with django_db_blocker.unblock(), schema_context("alpha"):
        dataset = dataset_create(
            file=upload(breast_cancer_csv()), name="cancer", actor="test"
        )
        try:
            job, _ = services.job_create(
                actor="test",
                dataset=dataset,
                config={
                    "target": "target",
                    "algorithm": "gradient_boosting",
                    "hyperparameters": {"n_estimators": 400},
                    "model_name": "worker-cancer",
                },
            )
            seen_progress = set()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job.refresh_from_db()
                seen_progress.add(job.progress)
                if job.status in Job.TERMINAL:
                    break
                time.sleep(0.1)
            assert job.status == "succeeded", (job.error_code, job.error_message)
            version = job.result_version
            assert version.lineage["job_id"] == job.pk
            assert version.metadata["performance"]["accuracy"] > 0.9
            assert len(version.metadata["feature_importance"]) == 30
            assert {a.role for a in version.artifacts.all()} == {"model", "background"}
            assert ModelVersion.objects.filter(lineage__job_id=job.pk).count() == 1
            # The bar moved: intermediate values between queued and done were seen.
            assert any(0 < p < 100 for p in seen_progress), seen_progress
        finally:
            Job.objects.filter(dataset=dataset).delete()
            RegisteredModel.objects.filter(name="worker-cancer").delete()
            Dataset.objects.filter(pk=dataset.pk).delete()


@pytest.mark.worker
def test_kill_9_mid_training_ends_within_lease_plus_60s(
    django_db_setup, django_db_blocker
):
    # Long enough that the second attempt keeps its lease while the other test
    # worker loads both CPUs (at 5 s a starved attempt was once taken over by a
    # third: correct fencing, but not what this test is about).
    lease = 10
    with django_db_blocker.unblock():
        assert_test_database()
        tenant_create(
            slug="jobkill",
            name="Job kill",
            admin_email="a@jobkill.test",
            domains=["jobkill.test"],
        )
        first = second = None
        try:
            with schema_context("jobkill"):
                dataset = dataset_create(
                    file=upload(breast_cancer_csv()), name="cancer", actor="test"
                )
                job, _ = services.job_create(
                    actor="test",
                    dataset=dataset,
                    config={
                        "target": "target",
                        "algorithm": "gradient_boosting",
                        "hyperparameters": {"n_estimators": 3000},
                    },
                    lease_seconds=lease,
                )
            first = start_worker()
            with schema_context("jobkill"):
                running = _wait(
                    job.pk,
                    lambda j: j.status == "running" and j.progress >= 20,
                    timeout=90,
                )
            assert running.status == "running", running.status
            kill_worker(first)  # SIGKILL to the whole cluster, mid-fit
            killed_at = time.monotonic()
            # Two workers: a scheduled task due at start-up cannot hold up the retry.
            second = start_worker({"Q_WORKERS": "2"})
            # The minute schedule runs the reaper; here it is run as often as the
            # test can afford, which only makes the window tighter.
            with schema_context("jobkill"):
                while time.monotonic() - killed_at < lease + 60:
                    services.jobs_reap()
                    job.refresh_from_db()
                    if job.status in Job.TERMINAL:
                        break
                    time.sleep(1)
                elapsed = time.monotonic() - killed_at
                versions = ModelVersion.objects.filter(lineage__job_id=job.pk).count()
                events = [e.message for e in job.events.all()]
            assert job.status in ("succeeded", "failed"), (
                job.status,
                job.attempts,
                job.progress,
                job.stage,
                round(elapsed),
                events,
            )
            assert elapsed <= lease + 60
            if job.status == "succeeded":
                # The killed attempt and its retry; on a starved machine a retry
                # that missed its heartbeat is taken over by another (fencing,
                # checked by the one version), so at least two.
                assert job.attempts >= 2
                assert versions == 1
                assert any("requeued" in m for m in events), events
            else:
                assert job.error_message
                assert versions == 0
        finally:
            for proc in (first, second):
                if proc is not None:
                    kill_worker(proc)
            queue_cleanup("jobkill")
            tenant_delete(slug="jobkill")
            shutil.rmtree(Path(settings.MEDIA_ROOT) / "jobkill", ignore_errors=True)
