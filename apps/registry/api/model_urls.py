"""`/api/v1/models/` routes of models, versions and imports. The fixed words come
first: a model slug is never one of them (services.RESERVED_SLUGS)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.registry.api import model_views as views
from apps.registry.api.importance_views import VersionImportanceView

versions = SimpleRouter()
versions.register("versions", views.ModelVersionViewSet, basename="model-version")
models = SimpleRouter()
models.register("", views.RegisteredModelViewSet, basename="model")

urlpatterns = [
    path("import/", views.ImportView.as_view(), name="model-import"),
    path("import/batch/", views.ImportBatchView.as_view(), name="model-import-batch"),
    path(
        "import/catalogue/",
        views.ImportCatalogueView.as_view(),
        name="model-import-catalogue",
    ),
    path(
        "import/validate/",
        views.ImportValidateView.as_view(),
        name="model-import-validate",
    ),
    path(
        "versions/<int:pk>/importance/",
        VersionImportanceView.as_view(),
        name="model-version-importance",
    ),
    *versions.urls,
    path(
        "<slug:slug>/versions/",
        views.ModelVersionsView.as_view(),
        name="model-versions",
    ),
    *models.urls,
]
