from django.db import models
from django.db.models import Q


class ModelGroup(models.Model):
    """Model versions behind one endpoint: a champion, challengers and shadows."""

    class Strategy(models.TextChoices):
        CHAMPION_CHALLENGER = "champion_challenger"
        AB_TEST = "ab_test"
        CANARY = "canary"
        SHADOW = "shadow"

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        ARCHIVED = "archived"

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    strategy = models.CharField(
        max_length=24, choices=Strategy.choices, default=Strategy.CHAMPION_CHALLENGER
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    # {"sticky": bool, "fallback_to_champion": bool, "canary": {"schedule": [...]},
    #  "shadow_sample_rate": float, "explain_sample_rate": float}
    traffic_config = models.JSONField(default=dict, blank=True)
    promotion_rules = models.JSONField(default=dict, blank=True)
    hypothesis = models.TextField(blank=True)
    primary_metric = models.CharField(max_length=50, blank=True)
    test_start = models.DateTimeField(null=True, blank=True)
    test_end = models.DateTimeField(null=True, blank=True)
    retention_days = models.PositiveIntegerField(default=30)
    # Bumped on every change that affects routing, so processes can cache routes.
    routing_version = models.PositiveIntegerField(default=1)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A version's place in a group. Invariants (database-enforced): one active
    champion per group, a version at most once per group, and — checked at commit by a
    constraint trigger — active non-shadow weights of an active group sum to 100."""

    class Role(models.TextChoices):
        CHAMPION = "champion"
        CHALLENGER = "challenger"
        SHADOW = "shadow"

    group = models.ForeignKey(
        ModelGroup, on_delete=models.CASCADE, related_name="members"
    )
    version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    weight = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group_id", "role", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "version"], name="version_once_per_group"
            ),
            models.UniqueConstraint(
                fields=["group"],
                condition=Q(role="champion", active=True),
                name="one_active_champion_per_group",
            ),
            models.CheckConstraint(
                condition=Q(weight__lte=100), name="weight_at_most_100"
            ),
            models.CheckConstraint(
                condition=~Q(role="shadow") | Q(weight=0), name="shadow_has_no_weight"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.group} · {self.role} · v{self.version_id} ({self.weight}%)"


class MemberRollup(models.Model):
    """One member's hour of traffic, recomputed from the inference table by
    apps.groups.rollups (late feedback included). Dashboards read these."""

    group = models.ForeignKey(
        ModelGroup, on_delete=models.CASCADE, related_name="rollups"
    )
    # Not a foreign key: a member may be removed while its history stays.
    member_id = models.BigIntegerField()
    version_id = models.BigIntegerField(null=True)
    role = models.CharField(max_length=10, blank=True)
    bucket_start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    # Counts per fixed log-spaced latency bucket (apps.groups.stats.LATENCY_BOUNDS_MS).
    latency_hist = models.JSONField(default=list)
    latency_sum_ms = models.FloatField(default=0.0)
    # Classification: ok rows with a feedback label, and those predicted right.
    labelled = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)
    # Regression: ok rows with a numeric prediction and feedback value.
    valued = models.PositiveIntegerField(default=0)
    abs_error_sum = models.FloatField(default=0.0)
    sq_error_sum = models.FloatField(default=0.0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["group_id", "bucket_start", "member_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["member_id", "bucket_start"], name="one_rollup_per_member_hour"
            )
        ]
        indexes = [models.Index(fields=["group", "bucket_start"])]

    def __str__(self) -> str:
        return f"g{self.group_id} m{self.member_id} {self.bucket_start:%Y-%m-%d %H}h"


class RollupWatermark(models.Model):
    """How far a group's rollups have read: rows with ts or feedback_at after
    `watermark` are read again on the next refresh."""

    group = models.OneToOneField(
        ModelGroup, on_delete=models.CASCADE, related_name="rollup_watermark"
    )
    watermark = models.DateTimeField()

    def __str__(self) -> str:
        return f"g{self.group_id} @ {self.watermark:%Y-%m-%d %H:%M:%S}"


class Promotion(models.Model):
    """A change of champion (manual or by rule) or a canary rollback."""

    class Kind(models.TextChoices):
        MANUAL = "manual"
        AUTO = "auto"
        ROLLBACK = "rollback"

    group = models.ForeignKey(
        ModelGroup, on_delete=models.CASCADE, related_name="promotions"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    member_id = models.BigIntegerField()
    version_id = models.BigIntegerField()
    previous_champion_member_id = models.BigIntegerField(null=True)
    previous_champion_version_id = models.BigIntegerField(null=True)
    retired_champion = models.BooleanField(default=False)
    actor = models.CharField(max_length=254)
    reason = models.TextField(blank=True)
    # The comparison numbers at the moment of the decision.
    evidence = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.group} · {self.kind} · m{self.member_id}"
