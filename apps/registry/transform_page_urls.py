"""`/models/import/...` pages: paste metadata, preview, decide; the review list."""

from django.urls import path

from apps.registry import views_transform as views

urlpatterns = [
    path("import/", views.model_import, name="model-import"),
    path("import/preview/", views.model_import_preview, name="model-import-preview"),
    path("import/review/", views.model_import_review, name="model-import-review"),
    path("import/<int:pk>/", views.model_import_detail, name="model-import-detail"),
    path(
        "import/<int:pk>/decide/",
        views.model_import_decide,
        name="model-import-decide",
    ),
]
