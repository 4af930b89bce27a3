"""Archive routes, relative to /api/v1/ (included into config.api_urls, namespace
"api"): `groups/<slug>/archives/` and `groups/<slug>/archives/<day>/download/`."""

from django.urls import path

from apps.inference.api.archive_views import ArchiveDownloadView, ArchiveListView

urlpatterns = [
    path(
        "groups/<slug:slug>/archives/",
        ArchiveListView.as_view(),
        name="group-archive-list",
    ),
    path(
        "groups/<slug:slug>/archives/<str:day>/download/",
        ArchiveDownloadView.as_view(),
        name="group-archive-download",
    ),
]
