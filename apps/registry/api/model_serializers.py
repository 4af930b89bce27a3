"""Shapes of `/api/v1/models/`: models, versions and provider imports. Serializers
validate and shape; the registry services save."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializer_fields import StorableDictField, StorableJSONField
from apps.providers.models import ProviderConfig
from apps.registry.metadata import CanonicalMetadataSerializer, validate_metadata
from apps.registry.models import ModelVersion, RegisteredModel

# Sources a client may register directly; training and fine-tune versions come
# from jobs.
CLIENT_SOURCES = [ModelVersion.Source.UPLOAD, ModelVersion.Source.PROVIDER]
MAX_BATCH_ITEMS = 500


@extend_schema_field(CanonicalMetadataSerializer)
class MetadataField(StorableJSONField):
    """Canonical metadata (see the schema); validated by the view's serializer."""


class JSONObjectField(StorableDictField):
    """A JSON object PostgreSQL can store (no NUL, lone surrogate or infinity)."""


def clean_metadata(
    metadata: Any, *, provider: ProviderConfig | None = None, external_id: str = ""
) -> dict[str, Any]:
    """Canonical metadata, with the provider's kind and model id filled in as an
    import would; errors are raised under `metadata.<field>`."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise serializers.ValidationError({"metadata": ["Must be a JSON object."]})
    if provider is not None:
        info = metadata.get("model_info", {})
        if not isinstance(info, dict):
            raise serializers.ValidationError(
                {"metadata": {"model_info": ["Must be a JSON object."]}}
            )
        metadata = {
            **metadata,
            "model_info": {
                **info,
                "provider": provider.kind,
                "external_id": external_id,
            },
        }
    try:
        return validate_metadata(metadata)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"metadata": exc.detail}) from exc


def field_messages(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"a.b": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for sub, messages in field_messages(value, name).items():
                out.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list) and not all(isinstance(d, str) for d in detail):
        for index, value in enumerate(detail):
            name = f"{prefix}.{index}" if prefix else str(index)
            for sub, messages in field_messages(value, name).items():
                out.setdefault(sub, []).extend(messages)
    else:
        items = detail if isinstance(detail, list) else [detail]
        out.setdefault(prefix or "non_field_errors", []).extend(str(m) for m in items)
    return out


# --- models --------------------------------------------------------------------


class VersionSummarySerializer(serializers.ModelSerializer):
    provider_name = serializers.CharField(
        source="provider.name", read_only=True, allow_null=True, default=None
    )
    provider_kind = serializers.CharField(
        source="provider.kind", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "status",
            "source",
            "provider",
            "provider_name",
            "provider_kind",
            "external_id",
            "created_at",
        ]
        read_only_fields = fields


class RegisteredModelSerializer(serializers.ModelSerializer):
    """A model as the list and the detail show it (read `model_list()` rows)."""

    owner = serializers.SerializerMethodField()
    version_count = serializers.IntegerField(read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "task_type",
            "tags",
            "owner",
            "version_count",
            "latest_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_owner(self, obj: RegisteredModel) -> str | None:
        return obj.owner.get_username() if obj.owner else None

    @extend_schema_field(VersionSummarySerializer(allow_null=True))
    def get_latest_version(self, obj: RegisteredModel) -> dict[str, Any] | None:
        latest = getattr(obj, "latest", None)
        if latest is None:  # not read through model_list()
            latest = list(
                obj.versions.select_related("provider").order_by("-number")[:1]
            )
        return VersionSummarySerializer(latest[0]).data if latest else None


class RegisteredModelWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        max_length=5000, required=False, allow_blank=True
    )
    task_type = serializers.ChoiceField(
        choices=RegisteredModel.Task.choices, required=False
    )
    tags = serializers.ListField(
        child=serializers.RegexField(
            r"^[\w.:+-]+$",
            max_length=50,
            error_messages={
                "invalid": "Letters, digits and . : + - _ only, no spaces."
            },
        ),
        max_length=20,
        required=False,
        help_text="Up to 20 tags of up to 50 characters.",
    )

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value.strip()

    def validate_tags(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # de-duplicated, order kept


# --- versions ------------------------------------------------------------------


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model_name = serializers.CharField(source="model.name", read_only=True)
    provider_name = serializers.CharField(
        source="provider.name", read_only=True, allow_null=True, default=None
    )
    provider_kind = serializers.CharField(
        source="provider.kind", read_only=True, allow_null=True, default=None
    )
    metadata = MetadataField(read_only=True)
    metrics = serializers.DictField(read_only=True)
    input_schema = serializers.ListField(child=serializers.DictField(), read_only=True)
    output_schema = serializers.DictField(read_only=True)
    lineage = serializers.DictField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "model",
            "model_name",
            "number",
            "status",
            "source",
            "provider",
            "provider_name",
            "provider_kind",
            "external_id",
            "metadata",
            "metrics",
            "input_schema",
            "output_schema",
            "lineage",
            "parent",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class VersionCreateSerializer(serializers.Serializer):
    """A new version of a model: an upload's metadata (the file goes to the artifact
    routes) or a provider's model. Training and fine-tune versions come from jobs."""

    source = serializers.ChoiceField(
        choices=ModelVersion.Source.choices,
        help_text="upload or provider (training and fine_tune come from jobs).",
    )
    provider_id = serializers.PrimaryKeyRelatedField(
        queryset=ProviderConfig.objects.all(),
        required=False,
        allow_null=True,
        help_text="Required when source is provider.",
    )
    external_id = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        default="",
        help_text="The provider's model id; required when source is provider.",
    )
    metadata = MetadataField(required=False)
    lineage = JSONObjectField(required=False)
    parent_id = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="A version of the same model this one derives from.",
    )
    activate = serializers.BooleanField(
        default=False, help_text="Register it active instead of draft."
    )

    def validate_source(self, value: str) -> str:
        if value not in CLIENT_SOURCES:
            raise serializers.ValidationError(
                f"'{value}' versions come from jobs; use upload or provider."
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        provider = attrs.get("provider_id")
        if attrs["source"] == ModelVersion.Source.PROVIDER:
            missing = {}
            if provider is None:
                missing["provider_id"] = ["Required when source is provider."]
            if not attrs.get("external_id"):
                missing["external_id"] = ["Required when source is provider."]
            if missing:
                raise serializers.ValidationError(missing)
        elif provider is not None or attrs.get("external_id"):
            raise serializers.ValidationError(
                {
                    "provider_id" if provider is not None else "external_id": [
                        "Only for source provider."
                    ]
                }
            )
        attrs["metadata"] = clean_metadata(
            attrs.get("metadata"),
            provider=provider,
            external_id=attrs.get("external_id", ""),
        )
        return attrs


class VersionUpdateSerializer(serializers.Serializer):
    metadata = MetadataField(help_text="Replaces the version's metadata.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict) and "status" in self.initial_data:
            raise serializers.ValidationError(
                {"status": ["Use POST …/activate/ or …/archive/."]}
            )
        attrs["metadata"] = clean_metadata(attrs["metadata"])
        return attrs


# --- imports -------------------------------------------------------------------


class ImportSerializer(serializers.Serializer):
    provider_id = serializers.PrimaryKeyRelatedField(
        queryset=ProviderConfig.objects.all()
    )
    external_id = serializers.CharField(
        max_length=300, help_text="The provider's model id."
    )
    model_name = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text=(
            "The registered model to add the version to (made if new). Default: "
            "<provider name>/<external id>."
        ),
    )
    activate = serializers.BooleanField(default=False)
    discover = serializers.BooleanField(
        default=False,
        help_text=(
            "Look the model up in the provider's catalogue now; its metadata comes "
            "from the catalogue entry. 404 if the provider does not list it."
        ),
    )
    metadata = MetadataField(
        required=False,
        help_text="Metadata to register instead of what the provider says.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "metadata" in attrs:
            if attrs["discover"]:
                raise serializers.ValidationError(
                    {"metadata": ["Give metadata or discover, not both."]}
                )
            attrs["metadata"] = clean_metadata(
                attrs["metadata"],
                provider=attrs["provider_id"],
                external_id=attrs["external_id"],
            )
        return attrs


class ImportBatchItemSerializer(serializers.Serializer):
    # Lenient on purpose: an item's content is checked by the import and reported
    # per item; only a wrongly shaped request is refused as a whole.
    external_id = serializers.CharField(required=False, allow_blank=True, default="")
    metadata = MetadataField(required=False, allow_null=True, default=None)
    model_name = serializers.CharField(required=False, allow_blank=True, default="")


class ImportBatchSerializer(serializers.Serializer):
    provider_id = serializers.PrimaryKeyRelatedField(
        queryset=ProviderConfig.objects.all()
    )
    items = serializers.ListField(
        child=ImportBatchItemSerializer(),
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        help_text=f"1 to {MAX_BATCH_ITEMS} items.",
    )
    mode = serializers.ChoiceField(
        choices=["skip_errors", "fail_fast"],
        default="skip_errors",
        help_text=(
            "skip_errors: every good item lands, every bad one is reported. "
            "fail_fast: all or nothing, stopping at the first bad item."
        ),
    )
    activate = serializers.BooleanField(default=False)


class ImportItemResultSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    status = serializers.CharField(
        help_text="created | updated | unchanged | failed | skipped"
    )
    version_id = serializers.IntegerField(allow_null=True)
    model = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name -> messages, for a failed item.",
    )


class ImportResultSerializer(ImportItemResultSerializer):
    version = ModelVersionSerializer()


class ImportSummarySerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()


class ImportBatchReportSerializer(serializers.Serializer):
    mode = serializers.CharField()
    summary = ImportSummarySerializer()
    results = ImportItemResultSerializer(many=True)


class CatalogueQuerySerializer(serializers.Serializer):
    provider_id = serializers.PrimaryKeyRelatedField(
        queryset=ProviderConfig.objects.all(),
        help_text="The provider whose catalogue to list.",
    )


class CatalogueEntrySerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The provider's model id (external id).")
    name = serializers.CharField()
    owned_by = serializers.CharField()
    created = serializers.IntegerField(allow_null=True)
    capabilities = serializers.ListField(child=serializers.CharField())
    context_window = serializers.IntegerField(allow_null=True)
    max_output_tokens = serializers.IntegerField(allow_null=True)
    imported = serializers.BooleanField()
    version_id = serializers.IntegerField(
        allow_null=True, help_text="The version it is imported as, if it is."
    )
    version_number = serializers.IntegerField(allow_null=True)
    version_status = serializers.CharField(allow_null=True)
    model = serializers.CharField(
        allow_null=True, help_text="Slug of the model holding that version."
    )


class ImportValidateSerializer(serializers.Serializer):
    """The body of an import (or one batch item), checked without saving."""

    provider_id = serializers.IntegerField(required=False, allow_null=True)
    external_id = serializers.CharField(required=False, allow_blank=True)
    model_name = serializers.CharField(required=False, allow_blank=True)
    metadata = MetadataField(required=False, allow_null=True)


class ImportValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name -> messages (nested metadata fields as metadata.a.b).",
    )
    warnings = serializers.ListField(child=serializers.CharField())
    action = serializers.CharField(
        allow_null=True,
        help_text="create | update | unchanged: what importing it now would do "
        "(null when invalid).",
    )
    version_id = serializers.IntegerField(allow_null=True)
    model = serializers.CharField(
        allow_blank=True, help_text="The model name the version would belong to."
    )
    metadata = MetadataField(
        allow_null=True, help_text="The canonical metadata that would be stored."
    )
