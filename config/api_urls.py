"""`/api/v1/` — the JSON API of a tenant."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from apps.accounts.api.views import ApiKeyViewSet, MeView
from apps.audit.api.views import AuditEventViewSet
from apps.groups.api.views import GroupFeedbackView, GroupPredictView, GroupViewSet
from apps.providers.api.views import ProviderViewSet

router = SimpleRouter()
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("providers", ProviderViewSet, basename="provider")
router.register("groups", GroupViewSet, basename="group")

urlpatterns = [
    # The hot paths first (patterns are tried in order).
    path(
        "groups/<slug:slug>/predict/", GroupPredictView.as_view(), name="group-predict"
    ),
    path(
        "groups/<slug:slug>/feedback/",
        GroupFeedbackView.as_view(),
        name="group-feedback",
    ),
    path("me/", MeView.as_view(), name="me"),
    path("models/", include("apps.registry.api.urls")),
    path("", include("apps.inference.api.archive_urls")),
    path("", include("apps.inference.api.browser_urls")),
    path("", include("apps.groups.api.analytics_urls")),
    path("", include("apps.jobs.api.urls")),
    path("", include("apps.notifications.api_urls")),
    *router.urls,
]
