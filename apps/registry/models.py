from django.conf import settings
from django.db import models
from django.db.models import Q


class RegisteredModel(models.Model):
    """A model a team manages; its numbered versions carry the substance."""

    class Task(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"
        CHAT = "chat"
        COMPLETION = "completion"
        EMBEDDING = "embedding"
        VISION = "vision"
        AUDIO = "audio"
        OTHER = "other"

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    task_type = models.CharField(
        max_length=20, choices=Task.choices, default=Task.OTHER
    )
    tags = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One numbered version: where it comes from, its canonical metadata, metrics,
    feature schema, artifacts and lineage."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        ARCHIVED = "archived"

    class Source(models.TextChoices):
        PROVIDER = "provider"
        UPLOAD = "upload"
        TRAINING = "training"
        FINE_TUNE = "fine_tune"

    model = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    provider = models.ForeignKey(
        "providers.ProviderConfig",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="model_versions",
    )
    external_id = models.CharField(max_length=300, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    input_schema = models.JSONField(default=list, blank=True)
    output_schema = models.JSONField(default=dict, blank=True)
    lineage = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
    )
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "number"], name="version_number_per_model"
            ),
            # Importing the same external model twice updates it, never duplicates it.
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=Q(provider__isnull=False) & ~Q(external_id=""),
                name="version_external_model_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"


class ModelArtifact(models.Model):
    """One file of a version (the model, a label map, a model card...), hashed."""

    class Role(models.TextChoices):
        MODEL = "model"
        LABEL_MAP = "label_map"
        MODEL_CARD = "model_card"
        # JSON rows of typical inputs, used by explainers that need a background sample.
        BACKGROUND = "background"
        OTHER = "other"

    class Format(models.TextChoices):
        SKOPS = "skops"
        ONNX = "onnx"
        JSON = "json"
        TEXT = "text"

    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="artifacts"
    )
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.MODEL)
    format = models.CharField(max_length=8, choices=Format.choices)
    path = models.CharField(
        max_length=500, help_text="Relative to MEDIA_ROOT/<schema>/."
    )
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version_id", "role", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version"],
                condition=Q(role="model"),
                name="one_model_file_per_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.format}, {self.sha256[:12]})"


class Transformation(models.Model):
    """One run of the metadata transformation: what came in, what was detected, what
    came out with a confidence per field, and what a person decided."""

    class Status(models.TextChoices):
        PENDING_REVIEW = "pending_review"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        AUTO_ACCEPTED = "auto_accepted"

    class Engine(models.TextChoices):
        DETERMINISTIC = "deterministic"
        LLM = "llm"

    input = models.JSONField(help_text="The input as received, capped in size.")
    input_truncated = models.BooleanField(default=False)
    detected_format = models.CharField(max_length=40)
    engine = models.CharField(max_length=20, choices=Engine.choices)
    provider = models.ForeignKey(
        "providers.ProviderConfig",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    result = models.JSONField(default=dict, blank=True)
    field_confidence = models.JSONField(default=dict, blank=True)
    overall_confidence = models.FloatField(default=0)
    needs_review = models.BooleanField(
        default=True, help_text="The overall confidence was below the threshold."
    )
    warnings = models.JSONField(default=list, blank=True)
    suggestions = models.JSONField(default=list, blank=True)
    message = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING_REVIEW
    )
    target_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="transformations",
    )
    accepted_metadata = models.JSONField(null=True, blank=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.CharField(max_length=254, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="transform_status_idx")
        ]

    def __str__(self) -> str:
        return f"transformation {self.pk} ({self.detected_format}, {self.status})"


class FeatureImportance(models.Model):
    """Running global importance of a version: the sum of |SHAP| per feature over every
    explained inference, and how many; mean |SHAP| = abs_sum / count."""

    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="feature_importance"
    )
    feature = models.CharField(max_length=200)
    abs_sum = models.FloatField(default=0)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["version_id", "-abs_sum"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "feature"], name="importance_feature"
            )
        ]

    def __str__(self) -> str:
        return f"v{self.version_id} {self.feature}"

    @property
    def mean_abs(self) -> float:
        return self.abs_sum / self.count if self.count else 0.0
