import django_filters
from rest_framework import serializers, viewsets

from apps.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "before",
            "after",
            "request_id",
        ]
        read_only_fields = fields


class AuditEventFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "object_type", "object_id", "request_id", "actor"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit trail of this organisation, newest first."""

    serializer_class = AuditEventSerializer
    queryset = AuditEvent.objects.all()
    filterset_class = AuditEventFilter
