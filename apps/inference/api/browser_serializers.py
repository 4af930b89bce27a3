"""Output shapes of the inference browser API (read only)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class InferenceRowSerializer(serializers.Serializer):
    """One logged inference without its payloads (the list's row)."""

    request_id = serializers.UUIDField(read_only=True)
    ts = serializers.DateTimeField(read_only=True)
    client_request_id = serializers.CharField(read_only=True, allow_null=True)
    member_id = serializers.IntegerField(read_only=True, allow_null=True)
    version_id = serializers.IntegerField(read_only=True, allow_null=True)
    role = serializers.CharField(read_only=True)
    shadow = serializers.BooleanField(read_only=True)
    routing_key = serializers.CharField(read_only=True, allow_null=True)
    requester = serializers.CharField(read_only=True)
    door = serializers.CharField(read_only=True)
    status = serializers.CharField(read_only=True)
    error_code = serializers.CharField(read_only=True, allow_null=True)
    error_message = serializers.CharField(read_only=True, allow_null=True)
    latency_ms = serializers.FloatField(read_only=True, allow_null=True)
    model_latency_ms = serializers.FloatField(read_only=True, allow_null=True)
    input_truncated = serializers.BooleanField(read_only=True)
    output_truncated = serializers.BooleanField(read_only=True)
    has_explanation = serializers.BooleanField(read_only=True)
    feedback = serializers.JSONField(read_only=True, allow_null=True)
    feedback_at = serializers.DateTimeField(read_only=True, allow_null=True)


class AppliedFiltersSerializer(serializers.Serializer):
    """The filters as applied: `since` is resolved (7 days before `until` or now
    when not given), so following `next_url` keeps the same window. Output only; the
    optional fields are not read_only so that the schema does not call them required."""

    since = serializers.DateTimeField(read_only=True)
    until = serializers.DateTimeField(required=False)
    member_id = serializers.IntegerField(required=False)
    version_id = serializers.IntegerField(required=False)
    role = serializers.CharField(required=False)
    status = serializers.CharField(required=False)
    min_latency_ms = serializers.FloatField(required=False)
    has_feedback = serializers.BooleanField(required=False)
    has_explanation = serializers.BooleanField(required=False)
    request_id = serializers.UUIDField(required=False)
    client_request_id = serializers.CharField(required=False)
    routing_key = serializers.CharField(required=False)
    text = serializers.CharField(required=False)
    shadow = serializers.BooleanField(required=False)


class InferenceListSerializer(serializers.Serializer):
    results = InferenceRowSerializer(many=True, read_only=True)
    next = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Opaque cursor of the next (older) page: pass it as `cursor` with "
        "the same filters. Null on the last page.",
    )
    next_url = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The next page's URL: the applied filters plus the cursor.",
    )
    filters = AppliedFiltersSerializer(read_only=True)


class InferenceAuditEventSerializer(serializers.Serializer):
    """An audit event recorded under the same request id."""

    id = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    actor = serializers.CharField(read_only=True)
    action = serializers.CharField(read_only=True)
    object_type = serializers.CharField(read_only=True)
    object_id = serializers.CharField(read_only=True)
    before = serializers.JSONField(read_only=True, allow_null=True)
    after = serializers.JSONField(read_only=True, allow_null=True)
    request_id = serializers.CharField(read_only=True)


class ExplanationSerializer(serializers.Serializer):
    """SHAP values: base_value + sum(values) == output, in `output_space`."""

    method = serializers.CharField(
        read_only=True, help_text="tree | linear | permutation"
    )
    output_space = serializers.CharField(
        read_only=True, help_text="log_odds | probability | raw"
    )
    target = serializers.JSONField(
        read_only=True, allow_null=True, help_text="The explained class, if any."
    )
    base_value = serializers.FloatField(read_only=True)
    output = serializers.FloatField(read_only=True)
    values = serializers.DictField(child=serializers.FloatField(), read_only=True)


@extend_schema_field(ExplanationSerializer(allow_null=True))
class ExplanationField(serializers.JSONField):
    """Passed through as stored (a malformed one must not break the page)."""


class InferenceDetailSerializer(InferenceRowSerializer):
    """One inference with its payloads, explanation, the audit events that share its
    request id and the rows tied to it (shadow copies, the request a shadow copied)."""

    input = serializers.JSONField(read_only=True, allow_null=True)
    output = serializers.JSONField(read_only=True, allow_null=True)
    explanation = ExplanationField(read_only=True, allow_null=True)
    audit_events = InferenceAuditEventSerializer(many=True, read_only=True)
    related = InferenceRowSerializer(many=True, read_only=True)
