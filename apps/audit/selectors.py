from django.db.models import QuerySet

from apps.audit.models import AuditEvent


def audit_event_list(
    *,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if action:
        qs = qs.filter(action=action)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    return qs
