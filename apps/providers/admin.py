"""Tenant admin for providers. The API key is never a form field here: not as
plaintext, not as ciphertext. Set it on the Providers page or through the API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from apps.core.ssrf import UnsafeURLError, check_url
from apps.providers import services
from apps.providers.models import ProviderConfig, ProviderUsage

HEALTH_FIELDS = (
    "last_health_status",
    "last_health_latency_ms",
    "last_health_error_code",
    "last_health_error",
    "last_health_at",
    "consecutive_failures",
    "circuit_open_until",
)


class ProviderConfigAdminForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, assume_scheme="https")

    class Meta:
        model = ProviderConfig
        fields = services.CONFIG_FIELDS  # an allow-list: the key is not among them

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"]
        try:
            check_url(url)
        except UnsafeURLError as exc:
            raise forms.ValidationError(exc.message, code="unsafe_url") from exc
        return url

    def clean_timeout_seconds(self) -> float:
        value = self.cleaned_data["timeout_seconds"]
        if value is not None and not 0 < value <= 600:
            raise forms.ValidationError("Must be more than 0 and at most 600 seconds.")
        return value


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderConfigAdminForm
    exclude = ("api_key", "api_key_last4")
    list_display = (
        "name",
        "kind",
        "base_url",
        "api_key_masked",
        "health",
        "enabled",
    )
    list_filter = ("kind", "enabled", "last_health_status")
    search_fields = ("name", "base_url", "default_model")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "kind",
                    "base_url",
                    "organization",
                    "project",
                    "api_key_masked",
                    "default_model",
                    "settings",
                    "enabled",
                )
            },
        ),
        (
            "Limits and cost",
            {
                "fields": (
                    "timeout_seconds",
                    "max_retries",
                    "rate_limit_per_minute",
                    "price_per_1k_input",
                    "price_per_1k_output",
                    "monthly_token_budget",
                    "monthly_cost_budget",
                )
            },
        ),
        ("Health", {"fields": HEALTH_FIELDS}),
        ("Record", {"fields": ("created_by", "created_at", "updated_at")}),
    )
    readonly_fields = (
        "api_key_masked",
        *HEALTH_FIELDS,
        "created_by",
        "created_at",
        "updated_at",
    )

    @admin.display(description="API key")
    def api_key_masked(self, obj: ProviderConfig) -> str:
        return obj.api_key_masked or "—"

    @admin.display(description="Health", ordering="last_health_status")
    def health(self, obj: ProviderConfig) -> str:
        if obj.last_health_status == ProviderConfig.Health.OK:
            return f"ok · {obj.last_health_latency_ms or 0:.0f} ms"
        if obj.last_health_status == ProviderConfig.Health.ERROR:
            return f"error: {obj.last_health_error_code}"
        return "not tested"

    def save_model(
        self, request: HttpRequest, obj: ProviderConfig, form: Any, change: bool
    ) -> None:
        """Through the services (audit, SSRF check); the stored key is untouched."""
        names = [f for f in services.CONFIG_FIELDS if f in form.cleaned_data]
        if change:
            fields = {f: form.cleaned_data[f] for f in names if f in form.changed_data}
            saved = services.provider_update(provider=obj, actor=request.user, **fields)
        else:
            fields = {f: form.cleaned_data[f] for f in names}
            saved = services.provider_create(actor=request.user, **fields)
        obj.pk = saved.pk
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at


@admin.register(ProviderUsage)
class ProviderUsageAdmin(admin.ModelAdmin):
    """Read-only: rows are written by every provider call."""

    list_display = (
        "provider",
        "day",
        "requests",
        "errors",
        "latency_ms_total",
        "tokens_in",
        "tokens_out",
        "cost",
    )
    list_filter = ("provider",)
    date_hierarchy = "day"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
