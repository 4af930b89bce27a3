"""Provider API shapes. The API key is write-only: it goes in, never comes out."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializer_fields import STORABLE_FIELD_MAPPING
from apps.core.ssrf import UnsafeURLError, check_url
from apps.providers.models import ProviderConfig
from apps.providers.selectors import (
    connector_or_none,
    empty_usage,
    provider_usage_month,
)
from apps.providers.services import CONFIG_FIELDS

HEALTH_FIELDS = [
    "last_health_status",
    "last_health_latency_ms",
    "last_health_error",
    "last_health_error_code",
    "last_health_at",
    "consecutive_failures",
    "circuit_open_until",
]
MAX_TIMEOUT_SECONDS = 600


class ProviderUsageSummarySerializer(serializers.Serializer):
    """This calendar month so far (server time zone)."""

    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    avg_latency_ms = serializers.FloatField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6)


class ProviderSerializer(serializers.ModelSerializer):
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=2000,
        style={"input_type": "password"},
        help_text=(
            "Write-only. Omit on update to keep the stored key; an empty string "
            "removes it."
        ),
    )
    api_key_masked = serializers.CharField(
        read_only=True, help_text="The last four characters of the stored key."
    )
    usage = serializers.SerializerMethodField()
    # settings: refused under its own name when PostgreSQL could not store it (no NUL,
    # lone surrogate or infinity anywhere).
    serializer_field_mapping = STORABLE_FIELD_MAPPING

    class Meta:
        model = ProviderConfig
        fields = [
            "id",
            *CONFIG_FIELDS,
            "api_key",
            "api_key_masked",
            *HEALTH_FIELDS,
            "usage",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [*HEALTH_FIELDS, "created_by", "created_at", "updated_at"]
        extra_kwargs = {
            "base_url": {
                "required": False,
                "allow_blank": True,
                "help_text": "Empty or omitted: the kind's default endpoint.",
            },
            "max_retries": {"max_value": 10},
            "price_per_1k_input": {"min_value": 0},
            "price_per_1k_output": {"min_value": 0},
            "monthly_cost_budget": {"min_value": 0},
        }

    @extend_schema_field(ProviderUsageSummarySerializer)
    def get_usage(self, obj: ProviderConfig) -> dict[str, Any]:
        # The list passes the usage of the whole page, read in one query.
        usage = self.context.get("usage")
        if usage is None:
            usage = provider_usage_month(provider_ids=[obj.pk])
        return ProviderUsageSummarySerializer(usage.get(obj.pk, empty_usage())).data

    def validate_timeout_seconds(self, value: float) -> float:
        if not 0 < value <= MAX_TIMEOUT_SECONDS:
            raise serializers.ValidationError(
                f"Must be more than 0 and at most {MAX_TIMEOUT_SECONDS} seconds."
            )
        return value

    def validate_base_url(self, value: str) -> str:
        if value:
            # Spelling and literal addresses here; the service resolves the name.
            try:
                check_url(value, resolve=False)
            except UnsafeURLError as exc:
                messages = (exc.fields or {}).get("base_url") or [exc.message]
                raise serializers.ValidationError(messages, code="unsafe_url") from exc
        return value

    def validate_settings(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Kind-specific rules of the connector, on the configuration as it would be."""
        data = kind_rules_input(attrs, self.instance)
        connector = connector_or_none(data.get("kind"))
        if connector is None:
            raise serializers.ValidationError(
                {"kind": [f"No connector is available for '{data.get('kind')}'."]}
            )
        if not attrs.get("base_url") and ("base_url" in attrs or not self.instance):
            attrs["base_url"] = connector.default_base_url
        data["base_url"] = attrs.get("base_url", data.get("base_url"))
        report = connector.validate_config(data)
        if report.errors:
            raise serializers.ValidationError(report.errors)
        return attrs


def kind_rules_input(
    attrs: dict[str, Any], instance: ProviderConfig | None
) -> dict[str, Any]:
    """The would-be configuration for validate_config: stored values under the new
    ones, and whether a key is already stored when none is given."""
    data: dict[str, Any] = {}
    if instance is not None:
        data = {name: getattr(instance, name) for name in CONFIG_FIELDS}
        if "api_key" not in attrs:
            data["has_api_key"] = bool(instance.api_key)
    data.update(attrs)
    return data


class ProviderModelSerializer(serializers.Serializer):
    """One model of the provider's catalogue."""

    id = serializers.CharField()
    name = serializers.CharField()
    owned_by = serializers.CharField()
    created = serializers.IntegerField(allow_null=True)
    capabilities = serializers.ListField(child=serializers.CharField())
    context_window = serializers.IntegerField(allow_null=True)
    max_output_tokens = serializers.IntegerField(allow_null=True)
    raw = serializers.JSONField(help_text="The provider's own description.")


class ProviderValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name -> messages; the same names as on create.",
    )
    warnings = serializers.ListField(child=serializers.CharField())
    suggestions = serializers.ListField(child=serializers.CharField())


class ProviderBulkSerializer(serializers.Serializer):
    ACTIONS = ["enable", "disable", "test", "delete"]

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=500
    )
    action = serializers.ChoiceField(choices=ACTIONS)


class ProviderBulkItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(required=False)
    status = serializers.CharField(
        help_text="ok | deleted | failed | not_found, or the health status for test."
    )
    error = serializers.CharField(required=False)


class ProviderBulkReportSerializer(serializers.Serializer):
    action = serializers.CharField()
    results = ProviderBulkItemSerializer(many=True)
