"""Inference browser API, relative to `/api/v1/` (included in config/api_urls.py,
so the names are `api:group-inference-*`)."""

from django.urls import path

from apps.inference.api.browser_views import (
    InferenceDetailView,
    InferenceExportView,
    InferenceListView,
)

urlpatterns = [
    path(
        "groups/<slug:slug>/inferences/",
        InferenceListView.as_view(),
        name="group-inference-list",
    ),
    path(
        "groups/<slug:slug>/inferences/export.csv",
        InferenceExportView.as_view(),
        name="group-inference-export",
    ),
    path(
        "groups/<slug:slug>/inferences/<str:request_id>/",
        InferenceDetailView.as_view(),
        name="group-inference-detail",
    ),
]
