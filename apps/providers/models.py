from django.db import models
from django.db.models import Q

from apps.core.crypto import EncryptedTextField


class ProviderConfig(models.Model):
    """An outside service this organisation's models live in, with its credentials."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI (or any OpenAI-compatible server)"
        ANTHROPIC = "anthropic", "Anthropic"
        GOOGLE = "google", "Google Gemini"
        HUGGINGFACE = "huggingface", "HuggingFace Inference"
        CUSTOM_HTTP = "custom_http", "Custom HTTP endpoint"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "not tested"
        OK = "ok", "ok"
        ERROR = "error", "error"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(max_length=500)
    organization = models.CharField(max_length=200, blank=True)
    project = models.CharField(max_length=200, blank=True)
    # Write-only: decrypted only to call the provider; shown as ••••<api_key_last4>.
    api_key = EncryptedTextField(blank=True)
    api_key_last4 = models.CharField(max_length=4, blank=True)
    default_model = models.CharField(max_length=200, blank=True)
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Kind-specific options (custom_http template...).",
    )
    timeout_seconds = models.FloatField(default=30.0)
    max_retries = models.PositiveSmallIntegerField(default=2)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute across all processes."
    )
    enabled = models.BooleanField(default=True)

    price_per_1k_input = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    price_per_1k_output = models.DecimalField(
        max_digits=12, decimal_places=6, default=0
    )
    monthly_token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    monthly_cost_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True
    )

    last_health_status = models.CharField(
        max_length=10, choices=Health.choices, default=Health.UNKNOWN
    )
    last_health_latency_ms = models.FloatField(null=True, blank=True)
    last_health_error = models.CharField(max_length=500, blank=True)
    last_health_error_code = models.CharField(max_length=30, blank=True)
    last_health_at = models.DateTimeField(null=True, blank=True)

    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_open_until = models.DateTimeField(null=True, blank=True)

    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(timeout_seconds__gt=0) & Q(timeout_seconds__lte=600),
                name="provider_timeout_range",
            ),
            models.CheckConstraint(
                condition=Q(max_retries__lte=10), name="provider_max_retries_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def api_key_masked(self) -> str:
        return f"••••{self.api_key_last4}" if self.api_key_last4 else ""


class ProviderUsage(models.Model):
    """Per provider and day: calls, errors, latency, tokens and estimated cost."""

    provider = models.ForeignKey(
        ProviderConfig, on_delete=models.CASCADE, related_name="usage"
    )
    day = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    latency_ms_total = models.FloatField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "day"], name="provider_usage_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.day}"


class ProviderRateWindow(models.Model):
    """Fixed one-minute windows counting calls per provider, shared by every process."""

    provider = models.ForeignKey(ProviderConfig, on_delete=models.CASCADE)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "window_start"], name="provider_rate_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.window_start:%H:%M} {self.count}"
