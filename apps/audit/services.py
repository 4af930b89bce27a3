"""The only writer of the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import models

from apps.audit.models import AuditEvent
from apps.core.context import current_request_id
from apps.core.db import assert_tenant_schema


def actor_label(actor: Any) -> tuple[str, int | None]:
    """(label, user id) for a User, an API-key principal, a string or None."""
    if actor is None:
        return "system", None
    if isinstance(actor, str):
        return actor, None
    if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None):
        return actor.get_username(), actor.pk
    return str(actor), None


def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the current tenant, tagged with the request id."""
    assert_tenant_schema()
    label, user_id = actor_label(actor)
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    return AuditEvent.objects.create(
        actor=label[:254],
        actor_user_id=user_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=before,
        after=after,
        request_id=current_request_id() or "",
    )
