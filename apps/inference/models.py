from django.core.validators import MinValueValidator
from django.db import models


class InferenceTable(models.Model):
    """Registry of the runtime-created log tables of this schema (one per group).
    The table itself is made and altered only by apps.inference.tables."""

    group = models.OneToOneField(
        "groups.ModelGroup", on_delete=models.PROTECT, related_name="inference_table"
    )
    name = models.CharField(max_length=63, unique=True)
    retention_days = models.PositiveIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)
    last_maintained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InferenceSettings(models.Model):
    """The organisation's inference settings: one row per tenant schema (pk 1).
    `default_retention_days` is what a new group starts with; each group then keeps
    its own `ModelGroup.retention_days`, which retention obeys."""

    default_retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)]
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "inference settings"
        verbose_name_plural = "inference settings"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id=1), name="inference_settings_singleton"
            ),
            models.CheckConstraint(
                condition=models.Q(default_retention_days__gte=1),
                name="inference_settings_retention_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"default retention {self.default_retention_days} days"


class InferenceArchive(models.Model):
    """One archived day of a group's inference log: a Parquet file at
    ARCHIVE_ROOT/<schema>/<group id>/<YYYY-MM-DD>.parquet (`path` is relative to
    ARCHIVE_ROOT), written and verified by apps.inference.retention before the day's
    partition was dropped. Groups are never deleted, so archives protect them."""

    group = models.ForeignKey(
        "groups.ModelGroup", on_delete=models.PROTECT, related_name="archives"
    )
    day = models.DateField()
    path = models.CharField(max_length=500)
    rows = models.BigIntegerField()
    bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["group_id", "-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "day"], name="one_archive_per_group_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.group_id}/{self.day:%Y-%m-%d} ({self.rows} rows)"
