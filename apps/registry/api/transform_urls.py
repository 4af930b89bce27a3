"""`/api/v1/models/transform/...` and the version quality/enhance routes."""

from django.urls import path

from apps.registry.api import transform_views as views

urlpatterns = [
    path("transform/", views.TransformView.as_view(), name="model-transform"),
    path(
        "transform/batch/",
        views.TransformBatchView.as_view(),
        name="model-transform-batch",
    ),
    path(
        "transform/capabilities/",
        views.TransformCapabilitiesView.as_view(),
        name="model-transform-capabilities",
    ),
    path(
        "transform/stats/",
        views.TransformStatsView.as_view(),
        name="model-transform-stats",
    ),
    path(
        "transform/<int:pk>/",
        views.TransformDetailView.as_view(),
        name="model-transform-detail",
    ),
    path(
        "transform/<int:pk>/accept/",
        views.TransformAcceptView.as_view(),
        name="model-transform-accept",
    ),
    path(
        "transform/<int:pk>/reject/",
        views.TransformRejectView.as_view(),
        name="model-transform-reject",
    ),
    path(
        "versions/<int:pk>/quality/",
        views.VersionQualityView.as_view(),
        name="model-version-quality",
    ),
    path(
        "versions/<int:pk>/enhance/",
        views.VersionEnhanceView.as_view(),
        name="model-version-enhance",
    ),
    path(
        "versions/<int:pk>/enhance/apply/",
        views.VersionEnhanceApplyView.as_view(),
        name="model-version-enhance-apply",
    ),
]
