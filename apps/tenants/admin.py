from django.contrib import admin
from django_tenants.admin import TenantAdminMixin

from apps.core.admin_sites import platform_admin
from apps.tenants.models import Domain, Organization


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Organization, site=platform_admin)
class OrganizationAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ("schema_name", "name", "created_at")
    search_fields = ("schema_name", "name")
    inlines = [DomainInline]

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Dropping a schema is done with `delete_tenant <slug> --yes`, never by a click.
        return False

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return ("schema_name",) if obj is not None else ()


@admin.register(Domain, site=platform_admin)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    search_fields = ("domain",)
