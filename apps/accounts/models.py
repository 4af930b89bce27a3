from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

from apps.accounts.roles import Scope


class ApiKey(AbstractAPIKey):
    """A machine credential of one tenant: stored hashed, shown once, with a scope."""

    scope = models.CharField(
        max_length=16, choices=Scope.CHOICES, default=Scope.PREDICT
    )
    created_by = models.CharField(max_length=254, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"


class ThrottleWindow(models.Model):
    """The request count of one caller (API key, user) in the current fixed window
    of a throttle scope. Shared by every web process and node through the database;
    the table is UNLOGGED (a crash resets the counts, nothing else is lost)."""

    scope = models.CharField(max_length=32)
    ident = models.CharField(max_length=200)
    window_start = models.BigIntegerField()
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "ident"], name="accounts_throttle_one_row_per_caller"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.ident} {self.hits}"
