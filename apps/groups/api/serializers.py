from typing import Any

from rest_framework import serializers

from apps.core.serializer_fields import STORABLE_FIELD_MAPPING, StorableJSONField
from apps.core.serializers import RequestBodySerializer
from apps.groups.models import Membership, ModelGroup


class MemberInSerializer(serializers.Serializer):
    version_id = serializers.IntegerField(min_value=1)
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    weight = serializers.IntegerField(min_value=0, max_value=100, default=0)
    active = serializers.BooleanField(default=True)


class MemberSerializer(serializers.ModelSerializer):
    version_id = serializers.IntegerField(read_only=True)
    model = serializers.CharField(source="version.model.name", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = Membership
        fields = [
            "id",
            "version_id",
            "model",
            "version_number",
            "role",
            "weight",
            "active",
            "assigned_at",
        ]
        read_only_fields = fields


class CanaryStepSerializer(serializers.Serializer):
    percent = serializers.IntegerField(min_value=0, max_value=100)
    after_minutes = serializers.FloatField(min_value=0, default=0)


class CanarySerializer(serializers.Serializer):
    schedule = CanaryStepSerializer(many=True)


class TrafficConfigSerializer(serializers.Serializer):
    sticky = serializers.BooleanField(default=False)
    fallback_to_champion = serializers.BooleanField(default=False)
    canary = CanarySerializer(required=False)
    explain_sample_rate = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        help_text="Share of answers explained (SHAP) in the background.",
    )


class GroupSerializer(serializers.ModelSerializer):
    members = MemberSerializer(many=True, read_only=True)
    traffic_config = TrafficConfigSerializer(required=False)
    inference_table = serializers.CharField(
        source="inference_table.name", read_only=True, default=None, allow_null=True
    )

    # promotion_rules: refused under its own name when PostgreSQL could not store it
    # (no NUL, lone surrogate or infinity anywhere).
    serializer_field_mapping = STORABLE_FIELD_MAPPING

    class Meta:
        model = ModelGroup
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "strategy",
            "status",
            "traffic_config",
            "promotion_rules",
            "hypothesis",
            "primary_metric",
            "test_start",
            "test_end",
            "retention_days",
            "routing_version",
            "members",
            "inference_table",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "routing_version",
            "members",
            "inference_table",
            "created_at",
            "updated_at",
            "test_start",
        ]
        extra_kwargs = {"slug": {"required": False}}


class GroupCreateSerializer(GroupSerializer):
    initial_members = MemberInSerializer(many=True, required=False, write_only=True)

    class Meta(GroupSerializer.Meta):
        fields = [*GroupSerializer.Meta.fields, "initial_members"]


class MembersSetSerializer(serializers.Serializer):
    members = MemberInSerializer(many=True)


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ModelGroup.Status.choices)


class PredictInSerializer(RequestBodySerializer):
    # NUL characters pass: the log stores U+FFFD in their place (apps.inference.writer).
    inputs = StorableJSONField(
        nul=False,
        help_text="One row {feature: value}, a list of rows, or for LLM groups "
        '{"messages": [...]} / {"prompt": "..."}.',
    )
    routing_key = serializers.CharField(
        max_length=200, required=False, allow_blank=True
    )
    explain = serializers.BooleanField(
        default=False, help_text="Return (and store) SHAP values for this answer."
    )

    def validate_inputs(self, value: Any) -> Any:
        if not isinstance(value, dict | list):
            raise serializers.ValidationError(
                "Expected an object or a list of objects."
            )
        return value


class ServedSerializer(serializers.Serializer):
    member_id = serializers.IntegerField()
    version_id = serializers.IntegerField()
    model = serializers.CharField()
    version = serializers.IntegerField()
    role = serializers.CharField()
    fallback = serializers.BooleanField()


class PredictOutSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    group = serializers.CharField()
    served = ServedSerializer()
    outputs = serializers.JSONField()
    latency_ms = serializers.FloatField()
    explanation = serializers.JSONField(
        required=False,
        help_text="When asked: {method, output_space, target, base_value, output, values}"
        " (a list for a batch); base_value + sum(values) == output.",
    )
    explanation_error = serializers.CharField(required=False)


class FeedbackItemSerializer(serializers.Serializer):
    request_id = serializers.CharField(max_length=64)
    label = StorableJSONField(required=False)
    value = serializers.FloatField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "label" not in attrs and "value" not in attrs:
            raise serializers.ValidationError({"label": "Give a label or a value."})
        return attrs


class FeedbackInSerializer(RequestBodySerializer):
    request_id = serializers.CharField(max_length=64, required=False)
    label = StorableJSONField(required=False)
    value = serializers.FloatField(required=False)
    items = FeedbackItemSerializer(many=True, required=False, max_length=10_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("items"):
            return attrs
        if not attrs.get("request_id"):
            raise serializers.ValidationError(
                {"request_id": "Give a request_id or items."}
            )
        item = FeedbackItemSerializer(data=self.initial_data)
        item.is_valid(raise_exception=True)
        return {"items": [item.validated_data]}


class FeedbackOutSerializer(serializers.Serializer):
    updated = serializers.IntegerField()
    unknown = serializers.ListField(child=serializers.CharField())
    invalid = serializers.ListField(child=serializers.CharField())
