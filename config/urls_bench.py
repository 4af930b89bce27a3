"""Tenant routes plus the bare baseline views (config.settings.bench only)."""

from django.urls import path

from config import bench_views
from config.urls_tenants import (  # noqa: F401 - error handlers come along
    handler400,
    handler403,
    handler404,
    handler500,
)
from config.urls_tenants import urlpatterns as tenant_urlpatterns

urlpatterns = [
    path("bench/bare-predict/", bench_views.bare_predict, name="bench-bare-predict"),
    path(
        "bench/bare-chat/v1/chat/completions",
        bench_views.bare_chat,
        name="bench-bare-chat",
    ),
    *tenant_urlpatterns,
]
