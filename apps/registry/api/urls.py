"""`/api/v1/models/`: the fixed words (upload, transform, import, versions) come before
the model routes, and model slugs may never be one of them."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.registry.api.artifact_urls")),
    path("", include("apps.registry.api.transform_urls")),
    path("", include("apps.registry.api.model_urls")),
]
