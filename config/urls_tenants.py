"""Routes of a tenant host (`<slug>.localhost` in development)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.accounts import views as account_views
from apps.audit import views as audit_views
from apps.core import views as core_views
from apps.providers import views as provider_views

handler400 = "apps.core.errors.handler400"
handler403 = "apps.core.errors.handler403"
handler404 = "apps.core.errors.handler404"
handler500 = "apps.core.errors.handler500"

core_patterns = ([path("", core_views.dashboard, name="dashboard")], "core")
account_patterns = (
    [
        path("api-keys/", account_views.api_keys, name="api-keys"),
        path(
            "api-keys/<str:prefix>/revoke/",
            account_views.api_key_revoke,
            name="api-key-revoke",
        ),
    ],
    "accounts",
)
provider_patterns = (
    [
        path("", provider_views.provider_list, name="provider-list"),
        path("new/", provider_views.provider_create, name="provider-create"),
        path("bulk/", provider_views.provider_bulk, name="provider-bulk"),
        path("<int:pk>/", provider_views.provider_edit, name="provider-edit"),
        path("<int:pk>/test/", provider_views.provider_test, name="provider-test"),
        path(
            "<int:pk>/delete/", provider_views.provider_delete, name="provider-delete"
        ),
    ],
    "providers",
)
audit_patterns = ([path("", audit_views.event_list, name="event-list")], "audit")

urlpatterns = [
    # The machine doors first: Django tries the patterns in order (and records every
    # miss), and a prediction should not walk past the pages and the admin.
    path("api/v1/", include(("config.api_urls", "api"))),
    path("v2/", include("apps.groups.api.oip_urls")),
    path("openai/v1/", include("apps.groups.api.openai_urls")),
    path("", include(core_patterns)),
    path("settings/", include(account_patterns)),
    path("settings/audit/", include(audit_patterns)),
    path("settings/providers/", include(provider_patterns)),
    path("models/", include("apps.registry.analytics_page_urls")),
    path("models/", include("apps.registry.urls")),
    path("groups/", include("apps.groups.page_urls")),
    path("groups/", include("apps.groups.analytics_page_urls")),
    path("", include("apps.inference.archive_page_urls")),
    path("inference/", include("apps.inference.page_urls")),
    path("jobs/", include("apps.jobs.page_urls")),
    path("", include("apps.notifications.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"
    ),
]
