"""Notifications: one `notify()` fans an event out to the in-app inbox, email and the
tenant's webhook endpoints; deliveries run as tenant tasks, signed and retried."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.audit.services import actor_label as audit_actor_label
from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema, current_schema
from apps.core.errors import ApplicationError, NotFoundError
from apps.core.ssrf import UnsafeURLError, check_url
from apps.core.tasks import tenant_async
from apps.notifications.models import (
    Event,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

EVENTS = [e.value for e in Event]
MAX_ATTEMPTS = 5
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def _backoff_base() -> float:
    return float(getattr(settings, "WEBHOOK_BACKOFF_BASE", 30.0))


def _timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT", 10.0))


def email_enabled() -> bool:
    """Email goes out when an email backend or an SMTP host is configured."""
    return settings.EMAIL_BACKEND != SMTP_BACKEND or settings.EMAIL_HOST not in (
        "",
        "localhost",
    )


def _user_for(label: str) -> Any:
    if not label or label == "system":
        return None
    model = get_user_model()
    return (
        model.objects.filter(Q(username=label) | Q(email__iexact=label))
        .filter(is_active=True)
        .order_by("pk")
        .first()
    )


def _link(name: str, *args: Any) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


# --- fan-out -------------------------------------------------------------------


def notify(
    *,
    event: str,
    title: str,
    payload: dict[str, Any],
    user: Any = None,
    actor_label: str = "",
    body: str = "",
    link: str = "",
) -> Notification | None:
    """In-app notification (+ email) for `user` (or the user named by `actor_label`)
    and one webhook delivery per enabled endpoint subscribed to `event`."""
    assert_tenant_schema()
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    recipient = user if user is not None else _user_for(actor_label)
    notification = None
    if recipient is not None and getattr(recipient, "pk", None):
        notification = Notification.objects.create(
            user=recipient, kind=event, title=title[:200], body=body, link=link
        )
        if recipient.email and email_enabled():
            tenant_async(notification_email_send, notification.pk)
    for endpoint in WebhookEndpoint.objects.filter(
        enabled=True, events__contains=[event]
    ):
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event=event,
            payload=payload,
            next_attempt_at=timezone.now(),
        )
        tenant_async(webhook_deliver, delivery.pk)
    return notification


def _safe(func: Any) -> None:
    # A notification must never break the change that caused it.
    try:
        func()
    except Exception:
        logger.exception("notification failed")


def job_finished_notify(*, job_id: int) -> None:
    """Notify the creator and webhooks that a job succeeded or failed."""
    from apps.jobs.models import Job

    job = Job.objects.select_related("created_by", "result_version__model").get(
        pk=job_id
    )
    succeeded = job.status == Job.Status.SUCCEEDED
    version = job.result_version
    payload: dict[str, Any] = {
        "job": {
            "id": job.pk,
            "kind": job.kind,
            "status": job.status,
            "error_code": job.error_code or None,
            "error_message": job.error_message or None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "result_version": (
                {
                    "id": version.pk,
                    "model": version.model.name,
                    "number": version.number,
                }
                if version
                else None
            ),
        }
    }
    if succeeded:
        title = f"Job {job.pk} succeeded"
        body = f"Registered {version.model.name} v{version.number}." if version else ""
    else:
        title = f"Job {job.pk} failed"
        body = f"{job.error_code}: {job.error_message}".strip(": ")
    notify(
        event=Event.JOB_SUCCEEDED if succeeded else Event.JOB_FAILED,
        user=job.created_by,
        title=title,
        body=body,
        link=_link("jobs:job-detail", job.pk),
        payload=payload,
    )


def job_finished_on_commit(*, job: Any) -> None:
    """Called where a job reaches succeeded/failed: notify once the change commits."""
    transaction.on_commit(partial(_safe, partial(job_finished_notify, job_id=job.pk)))


def promotion_notify(*, promotion_id: int) -> None:
    """Notify the acting user and webhooks of a promotion or rollback."""
    from apps.groups.models import Promotion

    promotion = Promotion.objects.select_related("group").get(pk=promotion_id)
    rollback = promotion.kind == Promotion.Kind.ROLLBACK
    group = promotion.group
    verb = "rolled back" if rollback else "promoted"
    payload = {
        "group": {"id": group.pk, "slug": group.slug, "name": group.name},
        "promotion": {
            "id": promotion.pk,
            "kind": promotion.kind,
            "member_id": promotion.member_id,
            "version_id": promotion.version_id,
            "previous_champion_version_id": promotion.previous_champion_version_id,
            "actor": promotion.actor,
            "reason": promotion.reason,
        },
    }
    notify(
        event=Event.GROUP_ROLLED_BACK if rollback else Event.GROUP_PROMOTED,
        actor_label=promotion.actor,
        title=f"Group {group.slug}: member {promotion.member_id} {verb}",
        body=promotion.reason,
        link=_link("groups:group-detail", group.slug),
        payload=payload,
    )


def promotion_on_commit(*, promotion: Any) -> None:
    transaction.on_commit(
        partial(_safe, partial(promotion_notify, promotion_id=promotion.pk))
    )


def notification_email_send(notification_id: int) -> bool:
    """Task: email one notification to its user (safe to run twice: at worst twice)."""
    notification = (
        Notification.objects.select_related("user").filter(pk=notification_id).first()
    )
    if notification is None or not notification.user.email:
        return False
    send_mail(
        subject=f"[ModelHub] {notification.title}",
        message=f"{notification.body}\n\n{notification.link}".strip(),
        from_email=None,
        recipient_list=[notification.user.email],
    )
    return True


# --- in-app inbox ----------------------------------------------------------------


def notification_mark_read(*, user: Any, notification_id: int) -> Notification:
    notification = Notification.objects.filter(pk=notification_id, user=user).first()
    if notification is None:
        raise NotFoundError(f"Notification {notification_id} not found.")
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


def notification_mark_all_read(*, user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


# --- webhook endpoints -----------------------------------------------------------


def _clean_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENTS]
    if not events or unknown:
        message = (
            f"Unknown events: {', '.join(unknown)}." if unknown else "Pick an event."
        )
        raise ApplicationError(
            message, code="invalid", fields={"events": [f"choose from {EVENTS}"]}
        )
    return sorted(set(events))


def _clean_url(url: str) -> str:
    try:
        return check_url(url)
    except UnsafeURLError as exc:
        raise ApplicationError(
            exc.message, code="unsafe_url", fields={"url": [exc.message]}
        ) from exc


@transaction.atomic
def webhook_endpoint_create(
    *,
    url: str,
    events: list[str],
    actor: Any,
    secret: str = "",
    description: str = "",
    enabled: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint; returns it and its signing secret (to be shown once)."""
    assert_tenant_schema()
    url = _clean_url(url)
    events = _clean_events(events)
    secret = secret or f"whsec_{secrets.token_urlsafe(32)}"
    label, _ = audit_actor_label(actor)
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        secret=secret,
        events=events,
        enabled=enabled,
        description=description,
        created_by=label[:254],
    )
    audit_record(
        actor=actor,
        action="webhook.create",
        obj=endpoint,
        after={"url": url, "events": events, "enabled": enabled},
    )
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, actor: Any, **fields: Any
) -> WebhookEndpoint:
    assert_tenant_schema()
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = {
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
    }
    if "url" in fields:
        endpoint.url = _clean_url(fields["url"])
    if "events" in fields:
        endpoint.events = _clean_events(fields["events"])
    if "enabled" in fields:
        endpoint.enabled = bool(fields["enabled"])
    if "description" in fields:
        endpoint.description = fields["description"]
    if fields.get("secret"):
        endpoint.secret = fields["secret"]
    endpoint.save()
    after = {
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
    }
    if fields.get("secret"):
        after["secret"] = "rotated"
    audit_record(
        actor=actor, action="webhook.update", obj=endpoint, before=before, after=after
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: Any) -> None:
    assert_tenant_schema()
    audit_record(
        actor=actor,
        action="webhook.delete",
        obj=endpoint,
        before={"url": endpoint.url, "events": endpoint.events},
    )
    endpoint.delete()


# --- delivery --------------------------------------------------------------------


def signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_body(delivery: WebhookDelivery) -> bytes:
    document = {
        "id": delivery.pk,
        "event": delivery.event,
        "tenant": current_schema(),
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _unsafe_cause(exc: BaseException) -> BaseException | None:
    from apps.providers.http import UnsafeConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UnsafeConnectionError | UnsafeURLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _schedule_retry(delivery: WebhookDelivery) -> None:
    from django_q.tasks import schedule

    schema = current_schema()
    path = f"{webhook_deliver.__module__}.{webhook_deliver.__qualname__}"
    when = delivery.next_attempt_at
    transaction.on_commit(
        lambda: schedule(
            "apps.core.tasks.run_in_tenant",
            schema,
            path,
            delivery.pk,
            name=f"{schema}:webhook:{delivery.pk}:{delivery.attempts}",
            schedule_type="O",
            next_run=when,
        )
    )


def _finish(
    delivery: WebhookDelivery,
    *,
    ok: bool,
    retryable: bool,
    code: int | None,
    error_code: str = "",
    error: str = "",
) -> None:
    now = timezone.now()
    delivery.response_code = code
    delivery.error_code = error_code
    delivery.error = error[:2000]
    if ok:
        delivery.status = WebhookDelivery.Status.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif retryable and delivery.attempts < MAX_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.RETRYING
        delay = _backoff_base() * 2 ** (delivery.attempts - 1)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        _schedule_retry(delivery)
    else:
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.next_attempt_at = None
    delivery.save()
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
        last_status=delivery.status, last_response_code=code, last_delivery_at=now
    )


def webhook_deliver(delivery_id: int) -> str:
    """Task: one attempt at POSTing a delivery. Safe to run twice: a finished
    delivery, or one whose next attempt is not due yet, is left alone."""
    import httpx2

    from apps.providers.http import guarded_client

    assert_tenant_schema()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return "missing"
        if delivery.status in WebhookDelivery.TERMINAL:
            return delivery.status
        if delivery.next_attempt_at and delivery.next_attempt_at > timezone.now():
            return "not_due"
        endpoint = delivery.endpoint
        if not endpoint.enabled:
            _finish(
                delivery,
                ok=False,
                retryable=False,
                code=None,
                error_code="disabled",
                error="The endpoint is disabled.",
            )
            return delivery.status
        delivery.attempts += 1
        try:
            check_url(endpoint.url)
        except UnsafeURLError as exc:
            _finish(
                delivery,
                ok=False,
                retryable=False,
                code=None,
                error_code="unsafe_url",
                error=exc.message,
            )
            return delivery.status
        body = webhook_body(delivery)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ModelHub-Webhooks/1",
            "X-ModelHub-Event": delivery.event,
            "X-ModelHub-Delivery": str(delivery.pk),
            "X-ModelHub-Timestamp": timestamp,
            "X-ModelHub-Signature": signature(
                secret=endpoint.secret, timestamp=timestamp, body=body
            ),
        }
        try:
            with guarded_client(timeout=_timeout()) as client:
                response = client.post(endpoint.url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            unsafe = _unsafe_cause(exc)
            if unsafe is not None:
                _finish(
                    delivery,
                    ok=False,
                    retryable=False,
                    code=None,
                    error_code="unsafe_url",
                    error=str(unsafe),
                )
            else:
                _finish(
                    delivery,
                    ok=False,
                    retryable=True,
                    code=None,
                    error_code="network_error",
                    error=f"{type(exc).__name__}: {exc}",
                )
            return delivery.status
        status = response.status_code
        _finish(
            delivery,
            ok=200 <= status < 300,
            retryable=status >= 500 or status == 429,
            code=status,
            error_code="" if 200 <= status < 300 else f"http_{status}",
            error="" if 200 <= status < 300 else response.text[:500],
        )
        return delivery.status
