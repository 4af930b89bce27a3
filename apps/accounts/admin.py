from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from apps.accounts.models import ApiKey

# The library's unscoped key model is not used: every key carries a scope.
admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = (  # type: ignore[assignment]
        "prefix",
        "name",
        "scope",
        "created",
        "last_used_at",
        "expiry_date",
        "revoked",
    )
    list_filter = ("scope", "revoked", "created")  # type: ignore[assignment]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = super().get_readonly_fields(request, obj)
        extra = ("created_by", "last_used_at")
        return (*fields, "scope", *extra) if obj is not None else (*fields, *extra)

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # revoke instead: the record stays for the audit trail
