from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.inference.models import InferenceArchive


class ArchiveSerializer(serializers.ModelSerializer):
    """One archived day of a group's inference log."""

    download_url = serializers.SerializerMethodField()

    class Meta:
        model = InferenceArchive
        fields = ["day", "rows", "bytes", "sha256", "created_at", "download_url"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, archive: InferenceArchive) -> str:
        path = reverse(
            "api:group-archive-download",
            kwargs={
                "slug": self.context["group"].slug,
                "day": f"{archive.day:%Y-%m-%d}",
            },
        )
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path
