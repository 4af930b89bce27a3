"""Two admin sites: the platform admin on the public host (tenants, domains, the
queue) and each tenant's admin on its own host (its users, keys, models...).
Keeping them apart means no tenant admin can open a shared table."""

from django.contrib import admin


class PlatformAdminSite(admin.AdminSite):
    site_header = "ModelHub platform"
    site_title = "ModelHub platform"
    index_title = "Tenants and background work"


platform_admin = PlatformAdminSite(name="platform_admin")

admin.site.site_header = "ModelHub"
admin.site.site_title = "ModelHub admin"
