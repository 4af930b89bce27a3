"""A group's archived inference days: list and sha256-verified download."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, renderers
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.roles import Role
from apps.groups.models import ModelGroup
from apps.inference.api.archive_serializers import ArchiveSerializer
from apps.inference.models import InferenceArchive
from apps.inference.retention import (
    archive_get,
    archive_list,
    archive_open_verified,
    parse_day,
)

PARQUET = "application/vnd.apache.parquet"

SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="Group slug.")
DAY = OpenApiParameter(
    "day", str, OpenApiParameter.PATH, description="Archived day, YYYY-MM-DD (UTC)."
)


def _group(slug: str) -> ModelGroup:
    # Lookups run in the request's schema: another tenant's group is a 404.
    return get_object_or_404(ModelGroup, slug=slug)


class ArchiveListView(generics.ListAPIView):
    """Days of the group's inference log archived to Parquet, newest first."""

    serializer_class = ArchiveSerializer
    read_role = Role.VIEWER
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[InferenceArchive]:
        return archive_list(group=self._group())

    def _group(self) -> ModelGroup:
        if not hasattr(self, "_group_obj"):
            self._group_obj = _group(self.kwargs["slug"])
        return self._group_obj

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "group": self._group()}

    @extend_schema(
        operation_id="groups_archives_list",
        parameters=[SLUG],
        responses={
            200: ArchiveSerializer(many=True),
            404: OpenApiResponse(description="No such group in this organisation."),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)


class _BinaryRenderer(renderers.BaseRenderer):
    """Lets clients ask for the file by its media type."""

    format = "bin"
    charset = None
    render_style = "binary"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return renderers.JSONRenderer().render(data)


class ParquetRenderer(_BinaryRenderer):
    media_type = PARQUET
    format = "parquet"


class OctetStreamRenderer(_BinaryRenderer):
    media_type = "application/octet-stream"


class ArchiveDownloadView(APIView):
    """The day's Parquet file, streamed after its sha256 is verified."""

    renderer_classes = [renderers.JSONRenderer, ParquetRenderer, OctetStreamRenderer]
    read_role = Role.VIEWER

    @extend_schema(
        operation_id="groups_archives_download",
        parameters=[SLUG, DAY],
        responses={
            (200, PARQUET): OpenApiTypes.BINARY,
            400: OpenApiResponse(description="`day` is not a YYYY-MM-DD date."),
            404: OpenApiResponse(
                description="No such group, or no archive for that day, in this "
                "organisation."
            ),
            409: OpenApiResponse(
                description="`archive_tampered` / `archive_missing`: the file "
                "changed on disk or is gone."
            ),
        },
    )
    def get(self, request: Request, slug: str, day: str) -> FileResponse:
        group = _group(slug)
        archive = archive_get(group=group, day=parse_day(day))
        handle = archive_open_verified(archive)
        return FileResponse(
            handle,
            as_attachment=True,
            filename=f"{group.slug}-{archive.day:%Y-%m-%d}.parquet",
            content_type=PARQUET,
        )
