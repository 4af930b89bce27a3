from typing import Any

from django.http import HttpRequest

from apps.notifications.selectors import notification_unread_count


def bell(request: HttpRequest) -> dict[str, Any]:
    """Unread count for the top bar: one COUNT, only for a signed-in tenant user."""
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if (
        tenant is None
        or tenant.schema_name == "public"
        or user is None
        or not user.is_authenticated
        or not hasattr(user, "groups")  # an API-key principal has no inbox
    ):
        return {}
    return {"unread_notifications": notification_unread_count(user=user)}
