"""Reads of notifications and webhooks in the current tenant."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.notifications.models import Notification, WebhookDelivery


def notification_list(
    *, user: Any, unread: bool | None = None
) -> QuerySet[Notification]:
    qs = Notification.objects.filter(user=user)
    if unread is True:
        qs = qs.filter(read_at__isnull=True)
    elif unread is False:
        qs = qs.filter(read_at__isnull=False)
    return qs


def notification_unread_count(*, user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def webhook_delivery_recent(*, limit: int = 50) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.select_related("endpoint").order_by(
        "-created_at", "-pk"
    )[:limit]
