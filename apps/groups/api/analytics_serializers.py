"""Shapes of the comparison, promotion and rule-evaluation answers."""

from __future__ import annotations

from rest_framework import serializers

from apps.groups.models import Promotion


class EstimateSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()


class SeriesPointSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    p95_ms = serializers.FloatField(allow_null=True)


class MemberKpiSerializer(serializers.Serializer):
    member_id = serializers.IntegerField()
    version_id = serializers.IntegerField(allow_null=True)
    label = serializers.CharField()
    role = serializers.CharField()
    active = serializers.BooleanField()
    weight = serializers.IntegerField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    error_rate = EstimateSerializer()
    labelled = serializers.IntegerField()
    correct = serializers.IntegerField()
    regression_n = serializers.IntegerField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    mean_latency_ms = serializers.FloatField(allow_null=True)
    primary = EstimateSerializer()
    secondary = serializers.DictField(
        child=EstimateSerializer(),
        required=False,
        help_text="Every outcome metric the member's labelled rows allow "
        "(accuracy, precision, recall, F1, AUC; MAE, RMSE), each with its "
        "confidence interval. Present with `?secondary=true`.",
    )
    series = SeriesPointSerializer(many=True)


class HypothesisSerializer(serializers.Serializer):
    statistic = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    difference = serializers.FloatField(allow_null=True)
    effect_size = serializers.FloatField(allow_null=True)
    method = serializers.CharField()


class VerdictSerializer(serializers.Serializer):
    member_id = serializers.IntegerField()
    verdict = serializers.ChoiceField(
        choices=[
            "needs_more_data",
            "challenger_better",
            "champion_better",
            "no_difference",
        ]
    )
    metric = serializers.CharField()
    message = serializers.CharField()
    required_per_arm = serializers.IntegerField(allow_null=True)
    needed_more = serializers.IntegerField()
    mde = serializers.FloatField(allow_null=True)
    champion = EstimateSerializer(allow_null=True)
    challenger = EstimateSerializer(allow_null=True)
    test = HypothesisSerializer(allow_null=True)


class ComparisonSerializer(serializers.Serializer):
    group = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    primary_metric = serializers.CharField()
    lower_is_better = serializers.BooleanField()
    champion_member_id = serializers.IntegerField(allow_null=True)
    members = MemberKpiSerializer(many=True)
    verdicts = VerdictSerializer(many=True)


class ComparisonQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    secondary = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Add every outcome metric per member (reads the labelled raw rows).",
    )

    def validate(self, attrs: dict) -> dict:  # type: ignore[type-arg]
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"since": ["must be before until"]})
        return attrs


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    passed = serializers.BooleanField()
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    message = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["promote", "rollback", "hold"])
    member_id = serializers.IntegerField(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())
    checks = CheckSerializer(many=True)
    verdict = VerdictSerializer(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)


class PromoteInSerializer(serializers.Serializer):
    member_id = serializers.IntegerField()
    retire_champion = serializers.BooleanField(default=False)
    dry_run = serializers.BooleanField(default=False)
    reason = serializers.CharField(default="", allow_blank=True, max_length=2000)


class PromotionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Promotion
        fields = [
            "id",
            "kind",
            "member_id",
            "version_id",
            "previous_champion_member_id",
            "previous_champion_version_id",
            "retired_champion",
            "actor",
            "reason",
            "evidence",
            "created_at",
        ]
        read_only_fields = fields


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    member_id = serializers.IntegerField()
    allowed = serializers.BooleanField()
    problem = serializers.CharField(allow_blank=True)
    rules = DecisionSerializer()
