"""`/api/v1/` — the JSON API of a tenant."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from apps.accounts.api.views import ApiKeyViewSet, MeView
from apps.audit.api.views import AuditEventViewSet
from apps.providers.api.views import ProviderViewSet

router = SimpleRouter()
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("providers", ProviderViewSet, basename="provider")

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("models/", include("apps.registry.api.urls")),
    *router.urls,
]
