"""Tenant admin for the registry. Writes go through the services (numbering, audit,
metadata validation); versions change only their status here, artifacts are
read-only and their files are never offered."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from apps.registry import services
from apps.registry.models import (
    ModelArtifact,
    ModelVersion,
    RegisteredModel,
    Transformation,
)

VERSION_FIELDS = (
    "model",
    "number",
    "status",
    "source",
    "provider",
    "external_id",
    "metadata",
    "metrics",
    "input_schema",
    "output_schema",
    "lineage",
    "parent",
    "created_by",
    "created_at",
    "updated_at",
)


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ("number", "status", "source", "provider", "external_id", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    ordering = ("-number",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "task_type", "version_count", "updated_at")
    list_filter = ("task_type",)
    search_fields = ("name", "slug", "description")
    fields = (
        "name",
        "slug",
        "description",
        "task_type",
        "tags",
        "owner",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("slug", "owner", "created_at", "updated_at")
    inlines = [ModelVersionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RegisteredModel]:
        return super().get_queryset(request).annotate(_versions=Count("versions"))

    @admin.display(description="Versions", ordering="_versions")
    def version_count(self, obj: RegisteredModel) -> int:
        return int(getattr(obj, "_versions", 0))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Versions keep audit, lineage and inference history: archive them instead.
        return False

    def save_model(
        self, request: HttpRequest, obj: RegisteredModel, form: Any, change: bool
    ) -> None:
        """Through the services (unique name, slug, audit)."""
        names = ("name", "description", "task_type", "tags")
        if change:
            fields = {n: form.cleaned_data[n] for n in names if n in form.changed_data}
            saved = (
                services.model_update(model=obj, actor=request.user, **fields)
                if fields
                else obj
            )
        else:
            saved = services.model_create(
                actor=request.user,
                owner=request.user,
                **{n: form.cleaned_data[n] for n in names},
            )
        obj.pk, obj.slug = saved.pk, saved.slug
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "status",
        "source",
        "provider",
        "external_id",
        "created_at",
    )
    list_filter = ("status", "source", "provider")
    search_fields = ("model__name", "external_id")
    list_select_related = ("model", "provider")
    fields = VERSION_FIELDS
    readonly_fields = tuple(f for f in VERSION_FIELDS if f != "status")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from imports, uploads and jobs

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool
    ) -> None:
        """Only the status changes here, through the service (audited)."""
        if "status" in form.changed_data:
            services.version_set_status(
                version=obj, status=form.cleaned_data["status"], actor=request.user
            )


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    """Read-only records of stored files; the files themselves are not offered."""

    list_display = ("original_name", "version", "role", "format", "size", "sha256")
    list_filter = ("role", "format")
    search_fields = ("original_name", "sha256", "version__model__name")
    list_select_related = ("version__model",)
    fields = (
        "version",
        "role",
        "format",
        "original_name",
        "path",
        "sha256",
        "size",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Transformation)
class TransformationAdmin(admin.ModelAdmin):
    """Read-only: decisions are taken on the import pages and through the API."""

    list_display = (
        "id",
        "detected_format",
        "engine",
        "overall_confidence",
        "status",
        "target_version",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "engine", "detected_format")
    readonly_fields = [f.name for f in Transformation._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
