"""`/v2/`: Open Inference Protocol v2 over REST."""

from django.urls import path

from apps.groups.api import oip

urlpatterns = [
    path("", oip.ServerMetadataView.as_view(), name="oip-server"),
    path("health/ready", oip.ServerReadyView.as_view(), name="oip-ready"),
    path("health/live", oip.ServerReadyView.as_view(), name="oip-live"),
    path("models/<slug:slug>", oip.ModelMetadataView.as_view(), name="oip-model"),
    path(
        "models/<slug:slug>/versions/<str:version>",
        oip.ModelMetadataView.as_view(),
        name="oip-model-version",
    ),
    path(
        "models/<slug:slug>/ready", oip.ModelReadyView.as_view(), name="oip-model-ready"
    ),
    path(
        "models/<slug:slug>/versions/<str:version>/ready",
        oip.ModelReadyView.as_view(),
        name="oip-model-version-ready",
    ),
    path("models/<slug:slug>/infer", oip.InferView.as_view(), name="oip-infer"),
    path(
        "models/<slug:slug>/versions/<str:version>/infer",
        oip.InferView.as_view(),
        name="oip-version-infer",
    ),
]
