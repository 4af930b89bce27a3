"""Pages under `/models/`."""

from django.urls import include, path

app_name = "registry"
urlpatterns = [
    path("", include("apps.registry.upload_urls")),
    path("", include("apps.registry.transform_page_urls")),
    path("", include("apps.registry.model_page_urls")),
]
