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
