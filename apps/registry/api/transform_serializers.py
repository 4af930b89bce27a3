"""Shapes of `/api/v1/models/transform/...` and the version quality/enhance routes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializer_fields import StorableJSONField
from apps.registry.metadata import CanonicalMetadataSerializer
from apps.registry.models import Transformation
from apps.registry.transform.detect import FORMATS
from apps.registry.transform.service import ENGINES

MAX_BATCH_ITEMS = 100


@extend_schema_field(CanonicalMetadataSerializer)
class CanonicalField(StorableJSONField):
    """Canonical metadata (see the schema). As input (an edit), refused when
    PostgreSQL could not store it; unlike a payload, NULs are not replaced."""


@extend_schema_field(
    {
        "description": "The input: a JSON object/array, or text (JSON, YAML, or a "
        "model card with a YAML header between --- lines).",
    }
)
class PayloadField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        # A form field "null" decodes to None after DRF's null check: the stored
        # input is NOT NULL, so this was a 500 (found by API fuzzing).
        if value is None:
            raise serializers.ValidationError("This field may not be null.")
        return value


class ConfidenceMapField(serializers.DictField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text", "Confidence 0..1 per field path (model_info.task, ...)."
        )
        super().__init__(child=serializers.FloatField(), **kwargs)


class TransformRequestSerializer(serializers.Serializer):
    payload = PayloadField()
    engine = serializers.ChoiceField(choices=ENGINES, default="auto")
    provider_id = serializers.IntegerField(required=False, allow_null=True)
    version_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="A version to attach the result to; a confident result is applied.",
    )


class TransformResultSerializer(serializers.Serializer):
    transformation_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(
        help_text="pending_review | auto_accepted (see the transformation)."
    )
    format = serializers.ChoiceField(choices=list(FORMATS))
    format_confidence = serializers.FloatField()
    syntax = serializers.CharField()
    engine = serializers.CharField(help_text="deterministic | llm: what produced it.")
    metadata = CanonicalField()
    field_confidence = ConfidenceMapField()
    overall_confidence = serializers.FloatField()
    needs_review = serializers.BooleanField()
    warnings = serializers.ListField(child=serializers.CharField())
    suggestions = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField()
    target_version_id = serializers.IntegerField(allow_null=True)


class BatchItemSerializer(serializers.Serializer):
    payload = PayloadField()
    version_id = serializers.IntegerField(required=False, allow_null=True)


class BatchRequestSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=BatchItemSerializer(), min_length=1, max_length=MAX_BATCH_ITEMS
    )
    engine = serializers.ChoiceField(choices=ENGINES, default="auto")
    provider_id = serializers.IntegerField(required=False, allow_null=True)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class BatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    ok = serializers.BooleanField()
    result = TransformResultSerializer(required=False)
    error = ErrorSerializer(required=False)


class BatchSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    ok = serializers.IntegerField()
    failed = serializers.IntegerField()
    needs_review = serializers.IntegerField()


class BatchResponseSerializer(serializers.Serializer):
    summary = BatchSummarySerializer()
    results = BatchItemResultSerializer(many=True)


class TransformationSerializer(serializers.ModelSerializer):
    provider_id = serializers.IntegerField(allow_null=True, read_only=True)
    target_version_id = serializers.IntegerField(allow_null=True, read_only=True)
    result = CanonicalField(read_only=True)
    accepted_metadata = CanonicalField(read_only=True, allow_null=True)
    field_confidence = ConfidenceMapField(read_only=True)
    warnings = serializers.ListField(child=serializers.CharField(), read_only=True)
    suggestions = serializers.ListField(child=serializers.CharField(), read_only=True)
    input = PayloadField(read_only=True)
    engine = serializers.CharField(read_only=True, help_text="deterministic | llm")

    class Meta:
        model = Transformation
        fields = [
            "id",
            "status",
            "detected_format",
            "engine",
            "provider_id",
            "input",
            "input_truncated",
            "result",
            "field_confidence",
            "overall_confidence",
            "needs_review",
            "warnings",
            "suggestions",
            "message",
            "target_version_id",
            "accepted_metadata",
            "created_by",
            "created_at",
            "reviewed_by",
            "reviewed_at",
        ]
        read_only_fields = fields


class TransformListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Transformation.Status.choices, required=False
    )


class FormatSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()


class EngineSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="deterministic | llm")
    available = serializers.BooleanField()
    description = serializers.CharField()


class LLMProviderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()


class CapabilitiesSerializer(serializers.Serializer):
    formats = FormatSerializer(many=True)
    engines = EngineSerializer(many=True)
    llm_providers = LLMProviderSerializer(many=True)
    review_threshold = serializers.FloatField()


class StatsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    by_format = serializers.DictField(child=serializers.IntegerField())
    by_engine = serializers.DictField(child=serializers.IntegerField())
    by_status = serializers.DictField(child=serializers.IntegerField())
    average_confidence = serializers.FloatField(allow_null=True)
    review_rate = serializers.FloatField(
        allow_null=True, help_text="Share of transformations below the threshold."
    )
    pending_review = serializers.IntegerField()


class AcceptSerializer(serializers.Serializer):
    metadata = CanonicalField(
        required=False, help_text="Edited metadata; the proposed result when absent."
    )
    version_id = serializers.IntegerField(required=False, allow_null=True)
    provider_id = serializers.IntegerField(required=False, allow_null=True)
    model_name = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def validate_metadata(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class AcceptResponseSerializer(serializers.Serializer):
    transformation = TransformationSerializer()
    version_id = serializers.IntegerField(allow_null=True)
    metadata = CanonicalField()
    detail = serializers.CharField()


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class QualityCheckSerializer(serializers.Serializer):
    field = serializers.CharField()
    weight = serializers.IntegerField()
    present = serializers.BooleanField()


class QualitySerializer(serializers.Serializer):
    version_id = serializers.IntegerField()
    score = serializers.IntegerField(min_value=0, max_value=100)
    missing = serializers.ListField(child=serializers.CharField())
    present = serializers.ListField(child=serializers.CharField())
    recommendations = serializers.ListField(child=serializers.CharField())
    checks = QualityCheckSerializer(many=True)


class EnhanceRequestSerializer(serializers.Serializer):
    provider_id = serializers.IntegerField()


class ProposalSerializer(serializers.Serializer):
    field = serializers.CharField()
    value = serializers.JSONField()
    confidence = serializers.FloatField()


class EnhanceResponseSerializer(serializers.Serializer):
    version_id = serializers.IntegerField()
    ok = serializers.BooleanField()
    missing = serializers.ListField(child=serializers.CharField())
    proposals = ProposalSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField()


class EnhanceApplySerializer(serializers.Serializer):
    fields = serializers.DictField(
        child=StorableJSONField(allow_null=True),
        help_text="The accepted proposals: {field path: value}.",
    )


class EnhanceApplyResponseSerializer(serializers.Serializer):
    version_id = serializers.IntegerField()
    metadata = CanonicalField()
