"""`/models/` pages of models, versions and the import from a provider. The fixed
words come first; a model slug is never one of them (services.RESERVED_SLUGS)."""

from django.urls import path

from apps.registry import views_models as views

urlpatterns = [
    path("", views.model_list, name="model-list"),
    path("import/provider/", views.import_provider, name="model-import-provider"),
    path(
        "import/provider/catalogue/",
        views.import_provider_catalogue,
        name="model-import-catalogue",
    ),
    path("<slug:slug>/", views.model_detail, name="model-detail"),
    path(
        "<slug:slug>/versions/<int:pk>/activate/",
        views.version_activate,
        name="version-activate",
    ),
    path(
        "<slug:slug>/versions/<int:pk>/archive/",
        views.version_archive,
        name="version-archive",
    ),
]
