"""The whole path through a real django-q2 worker process: a training job succeeds,
its webhook is delivered signed; a 500 is retried by the worker's scheduler."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.jobs import services as job_services
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Dataset, Job
from apps.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from apps.notifications.services import webhook_endpoint_create
from apps.registry.models import RegisteredModel
from tests.jobs.conftest import breast_cancer_csv, upload, worker  # noqa: F401
from tests.notifications.test_delivery import _receive, _verify
from tests.servers import until


def test_module_uses_the_test_database(db):
    """(Makes pytest-django set up the test database before the worker starts.)"""
    assert WebhookEndpoint.objects.model._meta.app_label == "notifications"


@pytest.mark.slow  # ~40 s; the signature and retries are also tested in-process
@pytest.mark.worker
def test_real_worker_job_success_delivers_a_signed_webhook_and_retries_a_500(
    worker,  # noqa: F811
    django_db_blocker,
    make_httpserver,
):
    from django_q.models import Schedule

    server = make_httpserver
    server.clear()
    receiver = _receive(server, "/worker-hook", [500, 200])
    with django_db_blocker.unblock(), schema_context("alpha"):
        endpoint, secret = webhook_endpoint_create(
            url=server.url_for("/worker-hook"), events=["job.succeeded"], actor="t"
        )
        dataset = dataset_create(
            file=upload(breast_cancer_csv()), name="ntf-worker", actor="test"
        )
        try:
            job, _ = job_services.job_create(
                actor="test",
                dataset=dataset,
                config={
                    "target": "target",
                    "algorithm": "logistic_regression",
                    "model_name": "ntf-worker",
                },
            )
            delivery = until(
                lambda: WebhookDelivery.objects.filter(
                    endpoint=endpoint, status="retrying"
                ).first(),
                120,
            )
            assert delivery is not None, Job.objects.get(pk=job.pk).status
            assert (delivery.attempts, delivery.response_code) == (1, 500)
            # Time travel: the retry is due now rather than in 30 s.
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                next_attempt_at=timezone.now()
            )
            scheduled = Schedule.objects.filter(name=f"alpha:webhook:{delivery.pk}:1")
            assert scheduled.update(next_run=timezone.now()) == 1
            done = until(
                lambda: WebhookDelivery.objects.filter(
                    pk=delivery.pk, status="succeeded"
                ).first(),
                60,
            )
            assert done is not None
            assert (done.attempts, done.response_code) == (2, 200)
            assert not scheduled.exists()  # a ONCE schedule is gone after its run
            job.refresh_from_db()
            assert job.status == "succeeded"
            assert len(receiver.requests) == 2
            for headers, body in receiver.requests:
                _verify(secret, headers, body)
                document = json.loads(body)
                assert document["event"] == "job.succeeded"
                assert document["data"]["job"]["id"] == job.pk
                assert (
                    document["data"]["job"]["result_version"]["id"]
                    == job.result_version_id
                )
        finally:
            Notification.objects.all().delete()
            WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()
            Job.objects.filter(dataset=dataset).delete()
            RegisteredModel.objects.filter(name="ntf-worker").delete()
            Dataset.objects.filter(pk=dataset.pk).delete()
            Schedule.objects.filter(name__startswith="alpha:webhook:").delete()
