from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializer_fields import StorableDictField
from apps.jobs.models import Dataset, Job, JobEvent
from apps.jobs.trainers.config import ALGORITHMS, PROBLEM_TYPES


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "format",
            "original_name",
            "sha256",
            "size",
            "row_count",
            "column_count",
            "columns",
            "candidate_targets",
            "preview",
            "created_at",
        ]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A UTF-8 CSV with a header row.")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "created_at", "level", "message", "metrics"]
        read_only_fields = fields


KIND_HELP = "local_training (default) or provider_fine_tune."


class JobSerializer(serializers.ModelSerializer):
    # A plain string here: an enum would collide with the providers' `kind` enum.
    kind = serializers.CharField(read_only=True, help_text=KIND_HELP)
    result_version = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "dataset",
            "config",
            "progress",
            "stage",
            "metrics",
            "metric_history",
            "error_code",
            "error_message",
            "attempts",
            "max_attempts",
            "lease_until",
            "heartbeat_at",
            "external_id",
            "idempotency_key",
            "result_version",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "id": {"type": "integer"},
                "model": {"type": "string"},
                "number": {"type": "integer"},
            },
        }
    )
    def get_result_version(self, job: Job) -> dict[str, Any] | None:
        version = job.result_version
        if version is None:
            return None
        return {"id": version.pk, "model": version.model.slug, "number": version.number}

    def get_created_by(self, job: Job) -> str | None:
        return job.created_by.get_username() if job.created_by else None


class JobCreateSerializer(serializers.Serializer):
    """Shapes only; the checks against the dataset happen in the service."""

    kind = serializers.CharField(default=Job.Kind.LOCAL_TRAINING, help_text=KIND_HELP)
    dataset = serializers.IntegerField(required=False)
    target = serializers.CharField(
        max_length=200,
        required=False,
        help_text="local_training: the column to predict.",
    )
    features = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=500
    )
    problem_type = serializers.ChoiceField(choices=PROBLEM_TYPES, required=False)
    algorithm = serializers.ChoiceField(
        choices=list(ALGORITHMS), default="gradient_boosting"
    )
    hyperparameters = StorableDictField(required=False)
    validation_split = serializers.FloatField(default=0.2)
    seed = serializers.IntegerField(default=42)
    model_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    group = serializers.SlugField(
        required=False, allow_blank=True, help_text="Add the result as a challenger."
    )
    provider = serializers.IntegerField(
        required=False, help_text="provider_fine_tune: the provider's id."
    )
    base_model = serializers.CharField(
        max_length=200, required=False, help_text="provider_fine_tune: the base model."
    )
    suffix = serializers.CharField(max_length=18, required=False, allow_blank=True)
    idempotency_key = serializers.CharField(
        max_length=200,
        required=False,
        help_text="Or the Idempotency-Key header: the same key returns the same job.",
    )

    def validate_kind(self, value: str) -> str:
        if value not in Job.Kind.values:
            raise serializers.ValidationError(f"One of {', '.join(Job.Kind.values)}.")
        return value
