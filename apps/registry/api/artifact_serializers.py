"""Upload and artifact API shapes."""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializer_fields import storable
from apps.registry.models import ModelArtifact, ModelVersion


def _json_text(value: str, field: str, kind: type) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise serializers.ValidationError(f"Not valid JSON: {exc}.") from exc
    if not isinstance(parsed, kind):
        noun = "a JSON list" if kind is list else "a JSON object"
        raise serializers.ValidationError(f"{field} must be {noun}.")
    # json.loads also reads NaN, 1e400 and escaped NUL or lone surrogates: refused
    # here under the field's name, not by the database.
    return storable(parsed)


class VersionUploadSerializer(serializers.Serializer):
    """multipart/form-data. The model file is skops or ONNX (pickle/joblib are
    refused); JSON fields arrive as strings."""

    file = serializers.FileField(
        help_text="The model: a skops file (skops.io.dump) or an ONNX model."
    )
    model_name = serializers.CharField(
        max_length=200,
        help_text="The registered model; created if no model has this name.",
    )
    input_schema = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=(
            'JSON list of features, e.g. [{"name": "age", "type": "number"}]. '
            "Required when the model does not name its features "
            "(no feature_names_in_)."
        ),
    )
    metadata = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="JSON object of canonical metadata (model_info, performance...).",
    )
    label_map = serializers.FileField(
        required=False, help_text="JSON or UTF-8 text: class ids to labels."
    )
    model_card = serializers.FileField(
        required=False, help_text="JSON or UTF-8 text (e.g. Markdown)."
    )

    def validate_input_schema(self, value: str) -> list[Any] | None:
        return _json_text(value, "input_schema", list) if value.strip() else None

    def validate_metadata(self, value: str) -> dict[str, Any] | None:
        return _json_text(value, "metadata", dict) if value.strip() else None


def _choice_text(values: list[str]) -> serializers.CharField:
    # Plain strings: a second `role`/`status` enum would collide with other
    # components' enums of the same field name in the OpenAPI schema.
    return serializers.CharField(
        read_only=True, help_text=f"One of: {', '.join(values)}."
    )


class ArtifactSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="original_name")
    role = _choice_text(ModelArtifact.Role.values)
    format = _choice_text(ModelArtifact.Format.values)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelArtifact
        fields = ["id", "role", "name", "format", "sha256", "size", "download_url"]

    @extend_schema_field(serializers.CharField())
    def get_download_url(self, artifact: ModelArtifact) -> str:
        return reverse(
            "api:artifact-download",
            kwargs={"version_id": artifact.version_id, "artifact_id": artifact.pk},
        )


class VersionUploadResultSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="pk")
    model = serializers.SlugField(source="model.slug")
    status = _choice_text(ModelVersion.Status.values)
    source = _choice_text(ModelVersion.Source.values)
    artifacts = ArtifactSerializer(many=True)

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "number",
            "model",
            "status",
            "source",
            "input_schema",
            "artifacts",
        ]
