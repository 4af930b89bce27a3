"""Archive pages, relative to the site root (namespace "archives")."""

from django.urls import path

from apps.inference import archive_page_views

app_name = "archives"
urlpatterns = [
    path(
        "groups/<slug:slug>/archives/",
        archive_page_views.group_archives,
        name="group-archives",
    ),
]
