"""The version Analytics tab (paths relative to /models/)."""

from django.urls import path

from apps.registry import views_analytics

app_name = "version_analytics"

urlpatterns = [
    path(
        "<slug:slug>/versions/<int:pk>/analytics/",
        views_analytics.version_analytics,
        name="version-analytics",
    ),
]
