"""Jobs and promotions fan out to the inbox, email and signed webhooks; deliveries
retry with backoff and are SSRF-checked when they are sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone
from django_tenants.utils import schema_context
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.jobs import services as job_services
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Job
from apps.notifications.models import Notification, WebhookDelivery
from apps.notifications.services import (
    webhook_deliver,
    webhook_endpoint_create,
)
from tests.groups.group_helpers import demo_group  # noqa: F401
from tests.jobs.conftest import breast_cancer_csv, upload


class Receiver:
    """Records what the webhook server got; answers with the given statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), request.get_data()))
        status = self.statuses.pop(0) if self.statuses else 200
        return Response("ok" if status < 300 else "boom", status=status)


def _receive(server: HTTPServer, path: str, statuses: list[int]) -> Receiver:
    receiver = Receiver(statuses)
    server.expect_request(path, method="POST").respond_with_handler(receiver)
    return receiver


def _endpoint(url: str, events: list[str]) -> tuple[Any, str]:
    return webhook_endpoint_create(url=url, events=events, actor="test")


def _running_job(user: Any) -> Job:
    dataset = dataset_create(file=upload(breast_cancer_csv()), name="d", actor=user)
    job, _ = job_services.job_create(
        actor=user, dataset=dataset, config={"target": "target"}
    )
    claimed = job_services.job_claim(job_id=job.pk)
    assert claimed is not None
    return claimed


def _register(job: Job) -> Any:
    from apps.registry.services import model_create, version_create

    model = model_create(name=f"ntf-{job.pk}", actor="test")
    return version_create(model=model, source="training", actor="test")


def _verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    timestamp = headers["X-Modelhub-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Modelhub-Signature"] == f"sha256={expected}"


def test_job_success_notifies_creator_by_inbox_email_and_signed_webhook(
    tenant_a, make_user, httpserver, drain, django_capture_on_commit_callbacks
):
    user = make_user(tenant_a, "editor")
    receiver = _receive(httpserver, "/hook", [])
    with schema_context("alpha"):
        endpoint, secret = _endpoint(httpserver.url_for("/hook"), ["job.succeeded"])
        _endpoint(httpserver.url_for("/other"), ["job.failed"])  # not subscribed
        job = _running_job(user)
        with django_capture_on_commit_callbacks(execute=True):
            version = job_services.job_succeed(
                job_id=job.pk, attempt=job.attempts, metrics={}, register=_register
            )
        notification = Notification.objects.get(user=user)
        delivery = WebhookDelivery.objects.get()
        assert drain() == [True, "succeeded"]

        assert (notification.kind, notification.title) == (
            "job.succeeded",
            f"Job {job.pk} succeeded",
        )
        assert notification.body == f"Registered ntf-{job.pk} v{version.number}."
        assert notification.link == f"/jobs/{job.pk}/"
        assert notification.read_at is None
        assert len(mail.outbox) == 1
        assert mail.outbox[0].to == [user.email]
        assert mail.outbox[0].subject == f"[ModelHub] Job {job.pk} succeeded"

        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == (
            "succeeded",
            1,
            200,
        )
        endpoint.refresh_from_db()
        assert (endpoint.last_status, endpoint.last_response_code) == ("succeeded", 200)

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    _verify(secret, headers, body)
    assert headers["X-Modelhub-Event"] == "job.succeeded"
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["event"] == "job.succeeded"
    assert document["tenant"] == "alpha"
    assert document["id"] == delivery.pk
    assert document["data"]["job"] == {
        "id": job.pk,
        "kind": "local_training",
        "status": "succeeded",
        "error_code": None,
        "error_message": None,
        "finished_at": document["data"]["job"]["finished_at"],
        "result_version": {
            "id": version.pk,
            "model": f"ntf-{job.pk}",
            "number": version.number,
        },
    }
    assert secret.encode() not in body


def test_job_failure_notifies_the_failed_event_only(
    tenant_a, make_user, httpserver, drain, django_capture_on_commit_callbacks
):
    user = make_user(tenant_a, "editor")
    failed = _receive(httpserver, "/failed", [])
    succeeded = _receive(httpserver, "/succeeded", [])
    with schema_context("alpha"):
        _, secret = _endpoint(httpserver.url_for("/failed"), ["job.failed"])
        _endpoint(httpserver.url_for("/succeeded"), ["job.succeeded"])
        job = _running_job(user)
        with django_capture_on_commit_callbacks(execute=True):
            assert job_services.job_fail(
                job_id=job.pk, attempt=job.attempts, code="oom", message="Out of memory"
            )
        assert drain() == [True, "succeeded"]
        notification = Notification.objects.get(user=user)
        assert (notification.kind, notification.title, notification.body) == (
            "job.failed",
            f"Job {job.pk} failed",
            "oom: Out of memory",
        )
    assert succeeded.requests == []
    headers, body = failed.requests[0]
    _verify(secret, headers, body)
    data = json.loads(body)["data"]["job"]
    assert (data["status"], data["error_code"], data["error_message"]) == (
        "failed",
        "oom",
        "Out of memory",
    )


def test_nothing_is_sent_for_a_rolled_back_change(
    tenant_a, make_user, httpserver, drain, django_capture_on_commit_callbacks
):
    user = make_user(tenant_a, "editor")
    with schema_context("alpha"):
        _endpoint(httpserver.url_for("/hook"), ["job.failed"])
        job = _running_job(user)
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            try:
                from django.db import transaction

                with transaction.atomic():
                    job_services.job_fail(
                        job_id=job.pk, attempt=job.attempts, code="x", message="y"
                    )
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
        assert callbacks == []
        assert drain() == []
        assert not Notification.objects.filter(user=user).exists()
        assert not WebhookDelivery.objects.exists()


def test_a_500_is_retried_with_exponential_backoff_then_succeeds(
    tenant_a, httpserver, drain, settings, django_capture_on_commit_callbacks
):
    from django_q.models import Schedule

    settings.WEBHOOK_BACKOFF_BASE = 2.0
    receiver = _receive(httpserver, "/flaky", [500, 503, 200])
    with schema_context("alpha"):
        endpoint, secret = _endpoint(httpserver.url_for("/flaky"), ["job.failed"])
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event="job.failed", payload={"n": 1}
        )
        before = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            assert webhook_deliver(delivery.pk) == "retrying"
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.response_code, delivery.error_code) == (
            1,
            500,
            "http_500",
        )
        first_wait = (delivery.next_attempt_at - before).total_seconds()
        assert 2.0 <= first_wait < 3.0
        # not due yet: running the task again early sends nothing
        assert webhook_deliver(delivery.pk) == "not_due"
        assert len(receiver.requests) == 1

        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        before = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            assert webhook_deliver(delivery.pk) == "retrying"
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.response_code) == (2, 503)
        second_wait = (delivery.next_attempt_at - before).total_seconds()
        assert 4.0 <= second_wait < 5.0

        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        assert webhook_deliver(delivery.pk) == "succeeded"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.response_code) == (
            "succeeded",
            3,
            200,
        )
        assert delivery.error_code == ""
        assert webhook_deliver(delivery.pk) == "succeeded"  # safe to run twice
    assert len(receiver.requests) == 3
    for headers, body in receiver.requests:
        _verify(secret, headers, body)
    # every retry was scheduled for the tenant, with the id only (no secret)
    names = sorted(
        Schedule.objects.filter(
            name__startswith=f"alpha:webhook:{delivery.pk}:"
        ).values_list("name", flat=True)
    )
    assert names == [
        f"alpha:webhook:{delivery.pk}:1",
        f"alpha:webhook:{delivery.pk}:2",
    ]
    for scheduled in Schedule.objects.filter(name__in=names):
        assert secret not in scheduled.args
        assert "'alpha'" in scheduled.args


def test_gives_up_after_five_attempts_and_4xx_is_not_retried(
    tenant_a, httpserver, settings
):
    settings.WEBHOOK_BACKOFF_BASE = 0.0
    down = _receive(httpserver, "/down", [500] * 10)
    gone = _receive(httpserver, "/gone", [410])
    with schema_context("alpha"):
        endpoint, _ = _endpoint(httpserver.url_for("/down"), ["job.failed"])
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event="job.failed", payload={}
        )
        outcomes = [webhook_deliver(delivery.pk) for _ in range(6)]
        assert outcomes == ["retrying"] * 4 + ["failed", "failed"]
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.next_attempt_at) == (5, None)

        other, _ = _endpoint(httpserver.url_for("/gone"), ["job.failed"])
        once = WebhookDelivery.objects.create(
            endpoint=other, event="job.failed", payload={}
        )
        assert webhook_deliver(once.pk) == "failed"
        once.refresh_from_db()
        assert (once.attempts, once.response_code, once.error_code) == (
            1,
            410,
            "http_410",
        )
    assert len(down.requests) == 5
    assert len(gone.requests) == 1


def test_an_address_that_became_unsafe_is_refused_at_call_time(
    tenant_a, httpserver, settings
):
    receiver = _receive(httpserver, "/hook", [])
    with schema_context("alpha"):
        endpoint, _ = _endpoint(httpserver.url_for("/hook"), ["job.failed"])
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event="job.failed", payload={}
        )
        settings.SSRF_ALLOW_LIST = []  # 127.0.0.1 is no longer allowed
        assert webhook_deliver(delivery.pk) == "failed"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.error_code, delivery.attempts) == (
            "failed",
            "unsafe_url",
            1,
        )
        assert "127.0.0.1 is not a public address" in delivery.error
    assert receiver.requests == []


def test_disabled_endpoints_get_no_new_deliveries(
    tenant_a, make_user, httpserver, drain, django_capture_on_commit_callbacks
):
    from apps.notifications.services import notify, webhook_endpoint_update

    user = make_user(tenant_a, "viewer")
    with schema_context("alpha"):
        endpoint, _ = _endpoint(httpserver.url_for("/hook"), ["group.promoted"])
        webhook_endpoint_update(endpoint=endpoint, actor="test", enabled=False)
        with django_capture_on_commit_callbacks(execute=True):
            notify(
                event="group.promoted",
                actor_label=user.email,
                title="t",
                payload={},
            )
        assert not WebhookDelivery.objects.exists()
        assert Notification.objects.get(user=user).title == "t"
        assert drain() == [True]


@pytest.mark.parametrize("role", ["promote", "rollback"])
def test_promotion_and_rollback_notify_the_actor_and_webhooks(
    role,
    demo_group,  # noqa: F811
    make_user,
    httpserver,
    drain,
    django_capture_on_commit_callbacks,
):
    from apps.groups.models import Membership
    from apps.groups.promotion import group_promote, group_rollback

    user = make_user(_alpha(), "editor")
    event = "group.promoted" if role == "promote" else "group.rolled_back"
    receiver = _receive(httpserver, f"/{role}", [])
    with schema_context("alpha"):
        _, secret = _endpoint(httpserver.url_for(f"/{role}"), [event])
        challenger = Membership.objects.get(group=demo_group, role="challenger")
        with django_capture_on_commit_callbacks(execute=True):
            if role == "promote":
                promotion = group_promote(
                    group=demo_group, member=challenger.pk, actor=user, reason="r"
                )
            else:
                promotion = group_rollback(
                    group=demo_group, member=challenger.pk, actor=user, reason="r"
                )
        drain()
        notification = Notification.objects.get(user=user)
        assert notification.kind == event
        assert notification.link == f"/groups/{demo_group.slug}/"
    headers, body = receiver.requests[0]
    _verify(secret, headers, body)
    data = json.loads(body)["data"]
    assert data["group"]["slug"] == demo_group.slug
    assert data["promotion"]["id"] == promotion.pk
    assert data["promotion"]["member_id"] == challenger.pk


def _alpha() -> Any:
    from apps.tenants.models import Organization

    return Organization.objects.get(schema_name="alpha")
