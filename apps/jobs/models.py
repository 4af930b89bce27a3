"""Datasets, training jobs and their events (tenant schema)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """An uploaded CSV (training) or JSONL (fine-tuning), stored at
    MEDIA_ROOT/<schema>/datasets/<token>.<format>."""

    class Format(models.TextChoices):
        CSV = "csv"
        JSONL = "jsonl"

    name = models.CharField(max_length=200)
    format = models.CharField(max_length=10, choices=Format.choices, default="csv")
    path = models.CharField(max_length=500)
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    row_count = models.PositiveIntegerField()
    column_count = models.PositiveIntegerField()
    # [{"name", "type": number|integer|string|boolean, "missing", "unique"}]
    columns = models.JSONField(default=list)
    candidate_targets = models.JSONField(default=list)
    preview = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    def column(self, name: str) -> dict | None:
        return next((c for c in self.columns if c["name"] == name), None)


class Job(models.Model):
    class Kind(models.TextChoices):
        LOCAL_TRAINING = "local_training"
        PROVIDER_FINE_TUNE = "provider_fine_tune"

    class Status(models.TextChoices):
        DRAFT = "draft"
        QUEUED = "queued"
        RUNNING = "running"
        CANCELLING = "cancelling"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.CANCELLING)
    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(
        max_length=30, choices=Kind.choices, default=Kind.LOCAL_TRAINING
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    config = models.JSONField(default=dict)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=100, blank=True)
    metrics = models.JSONField(default=dict)
    # [{"step", "name", "value"}] in the order they were reported
    metric_history = models.JSONField(default=list)
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    lease_seconds = models.PositiveIntegerField(default=120)
    lease_until = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The provider's job id once a fine-tune was created there.
    external_id = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(
        max_length=200, null=True, blank=True, unique=True
    )
    # OneToOne: a version comes from at most one job, and a job names one version.
    result_version = models.OneToOneField(
        "registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_job",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "lease_until"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="job_progress_max_100"
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class JobEvent(models.Model):
    class Level(models.TextChoices):
        INFO = "info"
        WARN = "warn"
        ERROR = "error"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    message = models.TextField()
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"
