"""`/api/v1/models/transform/...`: metadata in any known format (or any JSON, with an
LLM) -> canonical metadata with a confidence per field; review; version quality and
LLM enhancement. Viewers read, editors write; API keys need the `manage` scope."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role
from apps.core.errors import ApplicationError, NotFoundError
from apps.providers.models import ProviderConfig
from apps.registry.api.transform_serializers import (
    AcceptResponseSerializer,
    AcceptSerializer,
    BatchRequestSerializer,
    BatchResponseSerializer,
    CapabilitiesSerializer,
    EnhanceApplyResponseSerializer,
    EnhanceApplySerializer,
    EnhanceRequestSerializer,
    EnhanceResponseSerializer,
    QualitySerializer,
    RejectSerializer,
    StatsSerializer,
    TransformationSerializer,
    TransformListQuerySerializer,
    TransformRequestSerializer,
    TransformResultSerializer,
)
from apps.registry.models import ModelVersion
from apps.registry.services import version_get
from apps.registry.transform import selectors, service

INVALID = OpenApiResponse(description="Invalid input (error envelope naming fields).")
NOT_FOUND = OpenApiResponse(description="No such object here (error envelope).")
CONFLICT = OpenApiResponse(description="Already reviewed (error envelope).")
TOO_LARGE = OpenApiResponse(description="The payload is too large (error envelope).")
PROVIDER_FAILED = OpenApiResponse(
    description="The LLM provider failed: its error envelope (unavailable 503, "
    "timeout 504, auth 502, rate_limited 429...)."
)


class _Roles:
    read_role = Role.VIEWER
    write_role = Role.EDITOR


def _provider(pk: int | None) -> ProviderConfig | None:
    return None if pk is None else service.provider_get(pk=pk)


def _version(pk: int | None, name: str = "version_id") -> ModelVersion | None:
    if pk is None:
        return None
    try:
        return version_get(pk=pk)
    except NotFoundError as exc:
        raise ApplicationError(
            exc.message, code="invalid", fields={name: [exc.message]}
        ) from exc


class TransformView(_Roles, GenericAPIView):
    """List recorded transformations; POST runs one."""

    serializer_class = TransformationSerializer

    def get_queryset(self) -> Any:
        query = TransformListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.transformation_list(
            status=query.validated_data.get("status", "")
        )

    @extend_schema(
        parameters=[TransformListQuerySerializer],
        responses={200: TransformationSerializer(many=True), 400: INVALID},
        description="Recorded transformations, newest first; `status` filters.",
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        data = TransformationSerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=TransformRequestSerializer,
        responses={
            200: TransformResultSerializer,
            400: INVALID,
            413: TOO_LARGE,
            502: PROVIDER_FAILED,
            503: PROVIDER_FAILED,
        },
        description=(
            "Detect the input's format, map it to canonical metadata (rules for known "
            "formats; the provider's LLM for unknown ones with engine=auto, always "
            "with engine=llm) and record the run. Every field has a confidence; "
            "`needs_review` when the overall confidence is below the threshold. An "
            "unusable LLM answer is a 200 with overall_confidence 0 and a message."
        ),
    )
    def post(self, request: Request) -> Response:
        body = TransformRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = service.transform_metadata(
            payload=data["payload"],
            engine=data["engine"],
            provider=_provider(data.get("provider_id")),
            target_version=_version(data.get("version_id")),
            actor=request.user,
        )
        return Response(TransformResultSerializer(result.as_dict()).data)


class TransformBatchView(_Roles, APIView):
    @extend_schema(
        request=BatchRequestSerializer,
        responses={200: BatchResponseSerializer, 400: INVALID},
        description=(
            "Transform up to 100 inputs; each succeeds or fails on its own (a "
            "provider failure is that item's error). LLM calls run four at a time."
        ),
    )
    def post(self, request: Request) -> Response:
        body = BatchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        report = service.transform_batch(
            items=[dict(item) for item in data["items"]],
            engine=data["engine"],
            provider=_provider(data.get("provider_id")),
            actor=request.user,
        )
        return Response(BatchResponseSerializer(report).data)


class TransformCapabilitiesView(_Roles, APIView):
    @extend_schema(
        responses=CapabilitiesSerializer,
        description="Recognised formats; engines available here (llm needs an "
        "enabled OpenAI, Anthropic or Gemini provider).",
    )
    def get(self, request: Request) -> Response:
        body = selectors.transform_capabilities(
            review_threshold=service.review_threshold()
        )
        return Response(CapabilitiesSerializer(body).data)


class TransformStatsView(_Roles, APIView):
    @extend_schema(
        responses=StatsSerializer,
        description="Counts from the recorded transformations of this organisation.",
    )
    def get(self, request: Request) -> Response:
        return Response(StatsSerializer(selectors.transformation_stats()).data)


class TransformDetailView(_Roles, APIView):
    @extend_schema(responses={200: TransformationSerializer, 404: NOT_FOUND})
    def get(self, request: Request, pk: int) -> Response:
        row = service.transformation_get(pk=pk)
        return Response(TransformationSerializer(row).data)


class TransformAcceptView(_Roles, APIView):
    @extend_schema(
        request=AcceptSerializer,
        responses={
            200: AcceptResponseSerializer,
            400: INVALID,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        description=(
            "Accept the proposed (or edited) metadata. With a target version (given "
            "now or when transforming) it is merged into that version; for a "
            "provider's model whose provider is known (provider_id, or the only "
            "enabled provider of that kind) a model+version is registered; otherwise "
            "the accepted metadata is kept and returned."
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        row = service.transformation_get(pk=pk)
        body = AcceptSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        row, version = service.transformation_accept(
            transformation=row,
            actor=request.user,
            metadata=data.get("metadata"),
            target_version=_version(data.get("version_id")),
            provider=_provider(data.get("provider_id")),
            model_name=data.get("model_name", ""),
        )
        detail = (
            f"Applied to version {version.pk}."
            if version is not None
            else "Accepted; no version was created (no target version or provider)."
        )
        return Response(
            AcceptResponseSerializer(
                {
                    "transformation": row,
                    "version_id": version.pk if version else None,
                    "metadata": row.accepted_metadata,
                    "detail": detail,
                }
            ).data
        )


class TransformRejectView(_Roles, APIView):
    @extend_schema(
        request=RejectSerializer,
        responses={
            200: TransformationSerializer,
            400: INVALID,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        row = service.transformation_get(pk=pk)
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row = service.transformation_reject(
            transformation=row,
            actor=request.user,
            reason=body.validated_data.get("reason", ""),
        )
        return Response(TransformationSerializer(row).data)


class VersionQualityView(_Roles, APIView):
    @extend_schema(
        responses={200: QualitySerializer, 404: NOT_FOUND},
        description="How complete the version's metadata is (0-100), what is "
        "missing and what to add.",
    )
    def get(self, request: Request, pk: int) -> Response:
        report = service.metadata_quality(version_get(pk=pk))
        return Response(QualitySerializer(report).data)


class VersionEnhanceView(_Roles, APIView):
    @extend_schema(
        request=EnhanceRequestSerializer,
        responses={
            200: EnhanceResponseSerializer,
            400: INVALID,
            404: NOT_FOUND,
            502: PROVIDER_FAILED,
            503: PROVIDER_FAILED,
        },
        description="LLM proposals for the missing fields. Nothing is applied: send "
        "the ones you accept to enhance/apply/.",
    )
    def post(self, request: Request, pk: int) -> Response:
        version = version_get(pk=pk)
        body = EnhanceRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        provider = service.provider_get(pk=body.validated_data["provider_id"])
        return Response(
            EnhanceResponseSerializer(service.enhance(version, provider)).data
        )


class VersionEnhanceApplyView(_Roles, APIView):
    @extend_schema(
        request=EnhanceApplySerializer,
        responses={200: EnhanceApplyResponseSerializer, 400: INVALID, 404: NOT_FOUND},
        description="Write accepted proposals ({field path: value}) into the version.",
    )
    def post(self, request: Request, pk: int) -> Response:
        version = version_get(pk=pk)
        body = EnhanceApplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = service.enhance_apply(
            version=version,
            accepted_fields=body.validated_data["fields"],
            actor=request.user,
        )
        return Response(
            EnhanceApplyResponseSerializer(
                {"version_id": version.pk, "metadata": version.metadata}
            ).data
        )
