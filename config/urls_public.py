"""Routes of the public host: the landing page and the platform admin."""

from django.urls import path

from apps.core.admin_sites import platform_admin
from apps.tenants import views

handler400 = "apps.core.errors.handler400"
handler403 = "apps.core.errors.handler403"
handler404 = "apps.core.errors.handler404"
handler500 = "apps.core.errors.handler500"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/", platform_admin.urls),
]
