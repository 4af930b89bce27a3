from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import services
from apps.accounts.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    MeSerializer,
)
from apps.accounts.authentication import ApiKeyPrincipal
from apps.accounts.models import ApiKey
from apps.accounts.roles import Role, Scope, user_role
from apps.core.db import current_schema


class MeView(APIView):
    """Who the caller is in this tenant: a person with a role or a key with a scope."""

    key_scopes = (Scope.PREDICT, Scope.MANAGE)

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            data = {
                "kind": "api_key",
                "name": user.api_key.name,
                "role": None,
                "scope": user.scope,
            }
        else:
            role = user_role(user)
            data = {
                "kind": "user",
                "name": user.get_username(),
                "role": role.label if role else None,
                "scope": None,
            }
        return Response(MeSerializer({"tenant": current_schema(), **data}).data)


class ApiKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The organisation's API keys (admins). The key is shown only on creation."""

    serializer_class = ApiKeySerializer
    queryset = ApiKey.objects.all()
    lookup_field = "prefix"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    filterset_fields = ["scope", "revoked"]

    @extend_schema(
        request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer}
    )
    def create(self, request: Request) -> Response:
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key, raw = services.api_key_create(
            actor=request.user, **payload.validated_data
        )
        api_key.key = raw  # type: ignore[attr-defined]  # this response only
        return Response(
            ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, prefix: str) -> Response:
        get_object_or_404(ApiKey, prefix=prefix)
        api_key = services.api_key_revoke(prefix=prefix, actor=request.user)
        return Response(ApiKeySerializer(api_key).data)
