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
