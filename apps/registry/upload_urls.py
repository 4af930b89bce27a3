"""`/models/upload/`."""

from django.urls import path

from apps.registry import views_upload

urlpatterns = [
    path("upload/", views_upload.model_upload, name="model-upload"),
]
