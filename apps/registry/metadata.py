"""Canonical model metadata, validated by DRF serializers.

Every path into the registry (provider import, upload, training, the transformation
service) produces this one shape; `validate_metadata()` is the gate.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

ARCHITECTURES = ["transformer", "cnn", "rnn", "tree_ensemble", "linear", "other"]
TASKS = [
    "classification",
    "regression",
    "chat",
    "completion",
    "embedding",
    "vision",
    "audio",
    "text-generation",
    "text-classification",
    "token-classification",
    "summarization",
    "translation",
    "question-answering",
    "fill-mask",
    "image-classification",
    "object-detection",
    "speech-recognition",
    "other",
]
MODALITIES = ["text", "image", "audio", "video", "tabular", "embedding"]
CAPABILITIES = [
    "chat",
    "completion",
    "embedding",
    "vision",
    "audio",
    "function_calling",
    "classification",
    "regression",
    "streaming",
    "json_mode",
    "fine_tuning",
]
FEATURE_TYPES = [
    "number",
    "integer",
    "string",
    "boolean",
    "categorical",
    "text",
    "image",
    "array",
    "object",
]
PROVIDERS = [
    "openai",
    "anthropic",
    "google",
    "huggingface",
    "custom_http",
    "local",
    "upload",
    "training",
    "other",
]
NEEDS_EXTERNAL_ID = {"openai", "anthropic", "google"}


class ModelInfoSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(choices=PROVIDERS, required=False)
    external_id = serializers.CharField(
        max_length=300, required=False, allow_blank=True
    )
    name = serializers.CharField(max_length=300, required=False, allow_blank=True)
    architecture = serializers.ChoiceField(choices=ARCHITECTURES, required=False)
    architecture_detail = serializers.CharField(
        max_length=200, required=False, allow_blank=True
    )
    task = serializers.ChoiceField(choices=TASKS, required=False)
    modalities = serializers.ListField(
        child=serializers.ChoiceField(choices=MODALITIES), required=False, max_length=10
    )
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(choices=CAPABILITIES),
        required=False,
        max_length=20,
    )
    context_window = serializers.IntegerField(
        min_value=1, max_value=100_000_000, required=False, allow_null=True
    )
    max_output_tokens = serializers.IntegerField(
        min_value=1, max_value=100_000_000, required=False, allow_null=True
    )
    parameter_count = serializers.IntegerField(
        min_value=1, required=False, allow_null=True
    )
    repo_id = serializers.RegexField(
        r"^[\w.-]+/[\w.-]+$", max_length=200, required=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        provider = attrs.get("provider")
        if provider in NEEDS_EXTERNAL_ID and not attrs.get("external_id"):
            raise serializers.ValidationError(
                {"external_id": f"{provider} models need the provider's model id."}
            )
        if provider == "huggingface":
            missing = {}
            if not attrs.get("repo_id"):
                missing["repo_id"] = "HuggingFace models need a repo id (owner/name)."
            if not attrs.get("task"):
                missing["task"] = "HuggingFace models need a task."
            if missing:
                raise serializers.ValidationError(missing)
        return attrs


class TrainingInfoSerializer(serializers.Serializer):
    dataset = serializers.CharField(max_length=500, required=False, allow_blank=True)
    framework = serializers.CharField(max_length=100, required=False, allow_blank=True)
    framework_version = serializers.CharField(
        max_length=50, required=False, allow_blank=True
    )
    trained_at = serializers.DateField(required=False, allow_null=True)
    resources = serializers.CharField(max_length=500, required=False, allow_blank=True)


class PerformanceSerializer(serializers.Serializer):
    accuracy = serializers.FloatField(min_value=0, max_value=1, required=False)
    f1 = serializers.FloatField(min_value=0, max_value=1, required=False)
    auc = serializers.FloatField(min_value=0, max_value=1, required=False)
    precision = serializers.FloatField(min_value=0, max_value=1, required=False)
    recall = serializers.FloatField(min_value=0, max_value=1, required=False)
    mae = serializers.FloatField(min_value=0, required=False)
    rmse = serializers.FloatField(min_value=0, required=False)
    r2 = serializers.FloatField(max_value=1, required=False)
    latency_ms = serializers.FloatField(min_value=0, required=False)
    throughput_rps = serializers.FloatField(min_value=0, required=False)
    extra = serializers.DictField(child=serializers.FloatField(), required=False)


class ConstraintsSerializer(serializers.Serializer):
    minimum = serializers.FloatField(required=False)
    maximum = serializers.FloatField(required=False)
    enum = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=1000
    )
    pattern = serializers.CharField(max_length=500, required=False)
    max_length = serializers.IntegerField(min_value=1, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("minimum"), attrs.get("maximum")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"minimum": "minimum exceeds maximum."})
        return attrs


class FeatureSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=FEATURE_TYPES)
    required = serializers.BooleanField(default=True)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True
    )
    constraints = ConstraintsSerializer(required=False)


class OutputSchemaSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=FEATURE_TYPES, required=False)
    labels = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=10000
    )
    fields = FeatureSerializer(many=True, required=False)


class PricingSerializer(serializers.Serializer):
    input_per_1k = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        coerce_to_string=False,
    )
    output_per_1k = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        coerce_to_string=False,
    )
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)


class CanonicalMetadataSerializer(serializers.Serializer):
    model_info = ModelInfoSerializer(required=False)
    training = TrainingInfoSerializer(required=False)
    performance = PerformanceSerializer(required=False)
    input_schema = FeatureSerializer(many=True, required=False)
    output_schema = OutputSchemaSerializer(required=False)
    pricing = PricingSerializer(required=False)
    license = serializers.CharField(max_length=200, required=False, allow_blank=True)
    feature_importance = serializers.DictField(
        child=serializers.FloatField(), required=False
    )
    description = serializers.CharField(
        max_length=5000, required=False, allow_blank=True
    )

    def validate_input_schema(
        self, value: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        names = [f["name"] for f in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise serializers.ValidationError(f"duplicate feature names: {duplicates}")
        return value


def validate_metadata(data: Any) -> dict[str, Any]:
    """Validated canonical metadata as plain JSON types; raises ValidationError."""
    serializer = CanonicalMetadataSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return _jsonable(serializer.validated_data)


def _jsonable(value: Any) -> Any:
    from datetime import date
    from decimal import Decimal

    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
