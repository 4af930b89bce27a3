"""Routes under /api/v1/: include with `path("", include("apps.jobs.api.urls"))`."""

from rest_framework.routers import SimpleRouter

from apps.jobs.api.views import DatasetViewSet, JobViewSet

router = SimpleRouter()
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("jobs", JobViewSet, basename="job")

urlpatterns = router.urls
