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
