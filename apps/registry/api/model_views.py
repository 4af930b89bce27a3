"""`/api/v1/models/`: registered models, their versions and imports from providers.

Viewers read, editors write; API keys need the `manage` scope. Models are never
erased through the API: their versions carry audit, lineage and inference history,
so DELETE archives (see `RegisteredModelViewSet.destroy`).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.fields import SkipField, empty
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role
from apps.core.errors import ConflictError, NotFoundError
from apps.providers import services as provider_services
from apps.providers.connectors.base import DiscoveredModel
from apps.providers.models import ProviderConfig
from apps.registry import selectors, services
from apps.registry.api.model_serializers import (
    CatalogueEntrySerializer,
    CatalogueQuerySerializer,
    ImportBatchReportSerializer,
    ImportBatchSerializer,
    ImportResultSerializer,
    ImportSerializer,
    ImportValidateSerializer,
    ImportValidationSerializer,
    ModelVersionSerializer,
    RegisteredModelSerializer,
    RegisteredModelWriteSerializer,
    VersionCreateSerializer,
    VersionUpdateSerializer,
    clean_metadata,
    field_messages,
)
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.selectors import ModelFilter, VersionFilter

CONFLICT = OpenApiResponse(description="Conflict (error envelope).")
PROVIDER_FAILED = OpenApiResponse(
    description="The provider failed: its error envelope (auth, timeout, ...)."
)


class _Roles:
    read_role = Role.VIEWER
    write_role = Role.EDITOR


def _model_row(pk: int) -> RegisteredModel:
    return selectors.model_list().get(pk=pk)


class RegisteredModelViewSet(_Roles, viewsets.ModelViewSet):
    """Registered models of this organisation, by slug. Filters: `search` (name or
    description), `provider` (id or kind of a version's provider), `task_type`,
    `status` (has a version in it), `tag`."""

    serializer_class = RegisteredModelSerializer
    filterset_class = ModelFilter
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> Any:
        return selectors.model_list()

    @extend_schema(
        request=RegisteredModelWriteSerializer,
        responses={201: RegisteredModelSerializer, 409: CONFLICT},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        payload = RegisteredModelWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        model = services.model_create(
            actor=request.user, owner=request.user, **payload.validated_data
        )
        return Response(
            RegisteredModelSerializer(_model_row(model.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=RegisteredModelWriteSerializer,
        responses={200: RegisteredModelSerializer, 409: CONFLICT},
        description="Change name, description, task type or tags. The slug stays.",
    )
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_object()
        payload = RegisteredModelWriteSerializer(
            data=request.data, partial=kwargs.get("partial", False)
        )
        payload.is_valid(raise_exception=True)
        if payload.validated_data:
            services.model_update(
                model=model, actor=request.user, **payload.validated_data
            )
        return Response(RegisteredModelSerializer(_model_row(model.pk)).data)

    @extend_schema(
        request=RegisteredModelWriteSerializer,
        responses={200: RegisteredModelSerializer, 409: CONFLICT},
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    @extend_schema(
        request=None,
        responses={
            200: RegisteredModelSerializer,
            409: OpenApiResponse(
                description=(
                    "A version is active (`error.fields.versions` names it): "
                    "archive it first."
                )
            ),
        },
        description=(
            "Archive the model: every draft version becomes archived (each one "
            "audited). Nothing is erased: versions keep their audit, lineage and "
            "inference history. Refused while a version is active, since it may be "
            "serving: archive that version explicitly first."
        ),
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        model = self.get_object()
        with transaction.atomic():
            versions = list(
                ModelVersion.objects.select_for_update()
                .filter(model=model)
                .exclude(status=ModelVersion.Status.ARCHIVED)
                .order_by("number")
            )
            active = [
                f"v{v.number}"
                for v in versions
                if v.status == ModelVersion.Status.ACTIVE
            ]
            if active:
                raise ConflictError(
                    f"'{model.name}' has active versions ({', '.join(active)}); "
                    "archive them first.",
                    code="active_versions",
                    fields={"versions": active},
                )
            for version in versions:
                services.version_set_status(
                    version=version,
                    status=ModelVersion.Status.ARCHIVED,
                    actor=request.user,
                )
        return Response(RegisteredModelSerializer(_model_row(model.pk)).data)


class ModelVersionsView(_Roles, GenericAPIView):
    """`<slug>/versions/`: the versions of one model, newest first; add one."""

    serializer_class = ModelVersionSerializer
    filter_backends: list[Any] = []
    queryset = ModelVersion.objects.none()

    def _model(self, slug: str) -> RegisteredModel:
        model = RegisteredModel.objects.filter(slug=slug).first()
        if model is None:
            raise NotFoundError(f"No model '{slug}'.")
        return model

    @extend_schema(
        operation_id="models_versions_of_model_list",
        responses=ModelVersionSerializer(many=True),
    )
    def get(self, request: Request, slug: str) -> Response:
        versions = selectors.model_versions(model=self._model(slug))
        page = self.paginate_queryset(versions)
        data = ModelVersionSerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        operation_id="models_versions_of_model_create",
        request=VersionCreateSerializer,
        responses={201: ModelVersionSerializer, 409: CONFLICT},
        description=(
            "Register the next version of the model. Provider versions need "
            "`provider_id` and `external_id` (registered once per provider)."
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        model = self._model(slug)
        payload = VersionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        parent = None
        if data.get("parent_id"):
            parent = model.versions.filter(pk=data["parent_id"]).first()
            if parent is None:
                raise serializers.ValidationError(
                    {"parent_id": [f"No version {data['parent_id']} of this model."]}
                )
        version = services.version_create(
            model=model,
            source=data["source"],
            actor=request.user,
            metadata=data["metadata"],
            provider=data.get("provider_id"),
            external_id=data.get("external_id", ""),
            lineage=data.get("lineage"),
            parent=parent,
            status=ModelVersion.Status.ACTIVE
            if data["activate"]
            else ModelVersion.Status.DRAFT,
        )
        version = selectors.version_list().get(pk=version.pk)
        return Response(
            ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED
        )


class ModelVersionViewSet(
    _Roles, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """All versions, newest first. Filters: `model` (slug), `provider` (id or kind),
    `status`, `source`, `external_id`."""

    serializer_class = ModelVersionSerializer
    filterset_class = VersionFilter
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "patch", "post", "head", "options"]

    def get_queryset(self) -> Any:
        return selectors.version_list()

    @extend_schema(
        request=VersionUpdateSerializer,
        responses=ModelVersionSerializer,
        description=(
            "Replace the version's canonical metadata (metrics and schemas follow). "
            "Status changes go through activate/ and archive/."
        ),
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        version = self.get_object()
        payload = VersionUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.version_update_metadata(
            version=version,
            metadata=payload.validated_data["metadata"],
            actor=request.user,
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=pk)).data)

    def _set_status(self, request: Request, new_status: str) -> Response:
        version = services.version_set_status(
            version=self.get_object(), status=new_status, actor=request.user
        )
        return Response(
            self.get_serializer(self.get_queryset().get(pk=version.pk)).data
        )

    @extend_schema(request=None, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        """Make the version active (audited; a no-op if it already is)."""
        return self._set_status(request, ModelVersion.Status.ACTIVE)

    @extend_schema(request=None, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def archive(self, request: Request, pk: str | None = None) -> Response:
        """Archive the version (audited; a no-op if it already is)."""
        return self._set_status(request, ModelVersion.Status.ARCHIVED)


# --- imports -----------------------------------------------------------------------


def _discover(provider: ProviderConfig, external_id: str) -> DiscoveredModel:
    """The provider's own catalogue entry for the id (ProviderError on failure)."""
    for found in provider_services.provider_models(provider=provider):
        if found.id == external_id:
            return found
    raise NotFoundError(
        f"'{external_id}' is not in the catalogue of provider '{provider.name}'.",
        fields={"external_id": [f"'{external_id}' is not in the catalogue."]},
    )


class ImportView(_Roles, APIView):
    @extend_schema(
        request=ImportSerializer,
        responses={
            201: ImportResultSerializer,
            200: ImportResultSerializer,
            404: OpenApiResponse(
                description="discover: the provider does not list external_id."
            ),
            502: PROVIDER_FAILED,
        },
        description=(
            "Import one provider model as a version: 201 when created, 200 when it "
            "was already imported (`updated` or `unchanged`; never a duplicate)."
        ),
    )
    def post(self, request: Request) -> Response:
        payload = ImportSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        provider = data["provider_id"]
        discovered = (
            _discover(provider, data["external_id"]) if data["discover"] else None
        )
        result = services.model_import(
            provider=provider,
            external_id=data["external_id"],
            actor=request.user,
            discovered=discovered,
            metadata=data.get("metadata"),
            model_name=data["model_name"],
            activate=data["activate"],
        )
        assert result.version_id is not None  # model_import raises when it fails
        version = selectors.version_list().get(pk=result.version_id)
        body = {**result.__dict__, "version": version}
        created = result.status == "created"
        return Response(
            ImportResultSerializer(body).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ImportBatchView(_Roles, APIView):
    @extend_schema(
        request=ImportBatchSerializer,
        responses=ImportBatchReportSerializer,
        description=(
            "Import many models of one provider; answers 200 with a per-item report "
            "(`failed` items name their fields). 400 only for a malformed request."
        ),
    )
    def post(self, request: Request) -> Response:
        payload = ImportBatchSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        report = services.model_import_batch(
            provider=data["provider_id"],
            items=[dict(item) for item in data["items"]],
            mode=data["mode"],
            activate=data["activate"],
            actor=request.user,
        )
        return Response(ImportBatchReportSerializer(report).data)


class ImportCatalogueView(_Roles, APIView):
    @extend_schema(
        parameters=[CatalogueQuerySerializer],
        responses={200: CatalogueEntrySerializer(many=True), 502: PROVIDER_FAILED},
        description=(
            "The provider's catalogue, fetched now, each entry marked with whether "
            "it is already imported (and as which version)."
        ),
    )
    def get(self, request: Request) -> Response:
        query = CatalogueQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        provider = query.validated_data["provider_id"]
        catalogue = provider_services.provider_models(provider=provider)
        imported = selectors.imported_versions(
            provider=provider, external_ids=[m.id for m in catalogue]
        )
        rows = []
        for found in catalogue:
            known = imported.get(found.id)
            rows.append(
                {
                    "id": found.id,
                    "name": found.name or found.id,
                    "owned_by": found.owned_by,
                    "created": found.created,
                    "capabilities": list(found.capabilities),
                    "context_window": found.context_window,
                    "max_output_tokens": found.max_output_tokens,
                    "imported": known is not None,
                    "version_id": known["version_id"] if known else None,
                    "version_number": known["number"] if known else None,
                    "version_status": known["status"] if known else None,
                    "model": known["model_slug"] if known else None,
                }
            )
        return Response(CatalogueEntrySerializer(rows, many=True).data)


class ImportValidateView(_Roles, APIView):
    @extend_schema(
        request=ImportValidateSerializer,
        responses=ImportValidationSerializer,
        description=(
            "Check a would-be import (or batch item) without saving: the canonical "
            "metadata and the provider's rules, and whether it would create, update "
            "or leave a version unchanged. Always 200; see `valid`."
        ),
    )
    def post(self, request: Request) -> Response:
        raw = request.data if isinstance(request.data, dict) else {}
        fields = ImportValidateSerializer().fields
        errors: dict[str, list[str]] = {}
        values: dict[str, Any] = {}
        for name, field in fields.items():
            try:
                values[name] = field.run_validation(raw.get(name, empty))
            except SkipField:
                values[name] = None
            except serializers.ValidationError as exc:
                errors.update(field_messages(exc.detail, name))
        provider = None
        if "provider_id" not in errors:
            if values["provider_id"] is None:
                errors["provider_id"] = ["This field is required."]
            else:
                provider = ProviderConfig.objects.filter(
                    pk=values["provider_id"]
                ).first()
                if provider is None:
                    errors["provider_id"] = [f"No provider {values['provider_id']}."]
        external_id = values.get("external_id") or ""
        if "external_id" not in errors:
            if not external_id:
                errors["external_id"] = ["This field is required."]
            elif len(external_id) > 300:
                errors["external_id"] = ["At most 300 characters."]
        model_name = values.get("model_name") or ""
        if len(model_name) > 200:
            errors["model_name"] = ["At most 200 characters."]
        clean = None
        if provider is not None and not {"external_id", "metadata"} & set(errors):
            metadata = values.get("metadata")
            if metadata is None:
                # What the import stores when no metadata is given.
                found = DiscoveredModel(id=external_id, name=external_id)
                metadata = services.metadata_from_discovery(provider, found)
            try:
                clean = clean_metadata(
                    metadata, provider=provider, external_id=external_id
                )
            except serializers.ValidationError as exc:
                errors.update(field_messages(exc.detail))
        body: dict[str, Any] = {
            "valid": not errors,
            "errors": errors,
            "warnings": [],
            "action": None,
            "version_id": None,
            "model": "",
            "metadata": clean,
        }
        if not errors and provider is not None and clean is not None:
            body.update(
                selectors.import_preview(
                    provider=provider,
                    external_id=external_id,
                    metadata=clean,
                    model_name=model_name,
                )
            )
        return Response(ImportValidationSerializer(body).data)
