"""`/api/v1/models/upload/` and artifact downloads."""

from django.urls import path

from apps.registry.api.artifact_views import ArtifactDownloadView, VersionUploadView

urlpatterns = [
    path("upload/", VersionUploadView.as_view(), name="version-upload"),
    path(
        "versions/<int:version_id>/artifacts/<int:artifact_id>/download/",
        ArtifactDownloadView.as_view(),
        name="artifact-download",
    ),
]
