"""`/api/v1/providers/`: admins configure providers; every role reads them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.roles import Role
from apps.providers import services
from apps.providers.api.serializers import (
    ProviderBulkReportSerializer,
    ProviderBulkSerializer,
    ProviderModelSerializer,
    ProviderSerializer,
    ProviderValidationSerializer,
    kind_rules_input,
)
from apps.providers.models import ProviderConfig
from apps.providers.selectors import (
    ProviderFilter,
    connector_or_none,
    provider_usage_month,
)


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _messages(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _messages(item)]
    return [str(detail)]


class ProviderViewSet(viewsets.ModelViewSet):
    """Provider configurations of this organisation. The API key is write-only."""

    serializer_class = ProviderSerializer
    queryset = ProviderConfig.objects.all()
    filterset_class = ProviderFilter
    read_role = Role.VIEWER
    write_role = Role.ADMIN

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        items = list(queryset) if page is None else page
        context = {
            **self.get_serializer_context(),
            "usage": provider_usage_month(provider_ids=[p.pk for p in items]),
        }
        data = ProviderSerializer(items, many=True, context=context).data
        if page is None:
            return Response(data)
        return self.get_paginated_response(data)

    @extend_schema(
        responses={
            201: ProviderSerializer,
            409: OpenApiResponse(description="A provider with this name exists."),
        }
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        api_key = fields.pop("api_key", "")
        provider = services.provider_create(
            actor=request.user, api_key=api_key, **fields
        )
        return Response(
            self.get_serializer(provider).data, status=status.HTTP_201_CREATED
        )

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        provider = self.get_object()
        serializer = self.get_serializer(
            provider, data=request.data, partial=kwargs.get("partial", False)
        )
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        api_key = fields.pop("api_key", None)
        provider = services.provider_update(
            provider=provider, actor=request.user, api_key=api_key, **fields
        )
        return Response(self.get_serializer(provider).data)

    @extend_schema(
        responses={
            204: None,
            409: OpenApiResponse(
                description="In use: `error.fields.dependents` lists what uses it."
            ),
        }
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.provider_delete(provider=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses=ProviderSerializer,
        description=(
            "Run a health check now and store the result. Answers 200 whether the "
            "provider is healthy or not: see `last_health_status`."
        ),
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        provider = services.provider_test(
            provider=self.get_object(), actor=request.user
        )
        return Response(self.get_serializer(provider).data)

    @extend_schema(
        responses={
            200: ProviderModelSerializer(many=True),
            502: OpenApiResponse(description="The provider failed (error envelope)."),
        },
        description="The provider's model catalogue, fetched now.",
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def models(self, request: Request, pk: str | None = None) -> Response:
        catalogue = services.provider_models(provider=self.get_object())
        return Response(ProviderModelSerializer(catalogue, many=True).data)

    @extend_schema(
        request=ProviderSerializer,
        responses=ProviderValidationSerializer,
        description=(
            "Check a would-be configuration (the body of a create) without saving: "
            "errors, warnings and suggestions."
        ),
    )
    @action(detail=False, methods=["post"])
    def validate(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        valid = serializer.is_valid()
        errors: dict[str, list[str]] = {
            name: _messages(detail) for name, detail in serializer.errors.items()
        }
        warnings: list[str] = []
        suggestions: list[str] = []
        raw = request.data
        if hasattr(raw, "dict"):  # a form-encoded QueryDict
            raw = raw.dict()
        data = (
            dict(serializer.validated_data)
            if valid
            else kind_rules_input(raw if isinstance(raw, dict) else {}, None)
        )
        if connector_or_none(data.get("kind")) is not None:
            # Adds what the serializer does not do: DNS resolution of the URL.
            report = services.provider_validate(data=data)
            for name, messages in report.errors.items():
                known = errors.setdefault(name, [])
                known.extend(m for m in messages if m not in known)
            warnings, suggestions = report.warnings, report.suggestions
        body = {
            "valid": not errors,
            "errors": errors,
            "warnings": warnings,
            "suggestions": suggestions,
        }
        return Response(ProviderValidationSerializer(body).data)

    @extend_schema(
        request=ProviderBulkSerializer,
        responses=ProviderBulkReportSerializer,
        description="enable | disable | test | delete many providers; a per-item report.",
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        payload = ProviderBulkSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        report = services.provider_bulk(actor=request.user, **payload.validated_data)
        return Response(ProviderBulkReportSerializer(report).data)
