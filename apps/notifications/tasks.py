"""Thin task entry points (ids in); enqueued through apps.core.tasks.tenant_async."""

from apps.notifications.services import notification_email_send, webhook_deliver

__all__ = ["notification_email_send", "webhook_deliver"]
