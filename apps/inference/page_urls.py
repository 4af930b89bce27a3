"""`/inference/` pages (included at "inference/" in config/urls_tenants.py)."""

from django.urls import path

from apps.inference import browser_views_pages as views

app_name = "inference"
urlpatterns = [
    path("", views.browser_index, name="browser"),
    path("<slug:slug>/", views.browser, name="group"),
    path("<slug:slug>/<str:request_id>/", views.detail, name="detail"),
]
