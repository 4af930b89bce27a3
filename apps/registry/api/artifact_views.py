"""Upload a model file; download a version's artifacts (sha256-verified)."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role
from apps.registry.api.artifact_serializers import (
    VersionUploadResultSerializer,
    VersionUploadSerializer,
)
from apps.registry.artifacts import artifact_get, artifact_open_verified
from apps.registry.models import ModelArtifact
from apps.registry.uploads import version_upload


class VersionUploadView(APIView):
    """Register a model from a skops or ONNX file."""

    parser_classes = [MultiPartParser]
    write_role = Role.EDITOR

    @extend_schema(
        operation_id="models_upload",
        request={"multipart/form-data": VersionUploadSerializer},
        responses={
            201: VersionUploadResultSerializer,
            400: OpenApiResponse(
                description="Refused: pickle/joblib, disallowed skops types, ONNX "
                "external data, invalid or missing input_schema (error envelope "
                "naming the field)."
            ),
            413: OpenApiResponse(description="The file exceeds ARTIFACT_MAX_BYTES."),
        },
        description=(
            "Creates the model if no model has `model_name`, then a new draft "
            "version (source `upload`) with the file, an optional label map and "
            "model card. The feature schema comes from the model "
            "(`feature_names_in_`, ONNX graph inputs) or from `input_schema`."
        ),
    )
    def post(self, request: Request) -> Response:
        payload = VersionUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        extra = [
            (role, data[role])
            for role in (ModelArtifact.Role.LABEL_MAP, ModelArtifact.Role.MODEL_CARD)
            if data.get(role) is not None
        ]
        version = version_upload(
            file=data["file"],
            model_name=data["model_name"],
            extra_files=extra,
            input_schema=data.get("input_schema"),
            metadata=data.get("metadata"),
            actor=request.user,
        )
        return Response(
            VersionUploadResultSerializer(version).data, status=status.HTTP_201_CREATED
        )


class OctetStreamRenderer(renderers.BaseRenderer):
    """Lets clients ask for the file with `Accept: application/octet-stream`."""

    media_type = "application/octet-stream"
    format = "bin"
    charset = None
    render_style = "binary"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return renderers.JSONRenderer().render(data)


class ArtifactDownloadView(APIView):
    """The stored file, streamed after its sha256 is verified."""

    renderer_classes = [renderers.JSONRenderer, OctetStreamRenderer]
    read_role = Role.VIEWER

    @extend_schema(
        operation_id="models_versions_artifacts_download",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="No such artifact in this organisation."),
            409: OpenApiResponse(
                description="`artifact_tampered`: the file changed on disk."
            ),
        },
    )
    def get(self, request: Request, version_id: int, artifact_id: int) -> FileResponse:
        artifact = artifact_get(version_id=version_id, artifact_id=artifact_id)
        handle = artifact_open_verified(artifact)
        return FileResponse(
            handle,
            as_attachment=True,
            filename=artifact.original_name,
            content_type="application/octet-stream",
        )
