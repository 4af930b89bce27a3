"""Routes under /api/v1/: include with `path("", include("apps.notifications.api_urls"))`."""

from rest_framework.routers import SimpleRouter

from apps.notifications.api.views import NotificationViewSet, WebhookEndpointViewSet

router = SimpleRouter()
router.register("notifications", NotificationViewSet, basename="notification")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")

urlpatterns = router.urls
