"""`/api/v1/notifications/` (each user's inbox) and `/api/v1/webhooks/` (admins)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.roles import Role
from apps.notifications import selectors, services
from apps.notifications.api.serializers import (
    MarkAllReadSerializer,
    NotificationSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointSerializer,
)
from apps.notifications.models import Notification, WebhookEndpoint


class NotificationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The signed-in user's notifications (API keys have no inbox)."""

    serializer_class = NotificationSerializer
    queryset = Notification.objects.none()
    read_role = Role.VIEWER
    write_role = Role.VIEWER

    def _user(self) -> Any:
        user = self.request.user
        if not hasattr(user, "groups"):
            raise PermissionDenied("Notifications belong to people, not API keys.")
        return user

    def get_queryset(self) -> QuerySet[Notification]:
        if getattr(self, "swagger_fake_view", False):
            return Notification.objects.none()
        raw = self.request.query_params.get("unread")
        unread = None if raw is None else raw.lower() in ("1", "true", "yes")
        return selectors.notification_list(user=self._user(), unread=unread)

    @extend_schema(
        parameters=[OpenApiParameter("unread", bool, description="Only unread/read.")]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"], url_path="read")
    def read(self, request: Request, pk: str | None = None) -> Response:
        notification = services.notification_mark_read(
            user=self._user(), notification_id=int(pk or 0)
        )
        return Response(NotificationSerializer(notification).data)

    @extend_schema(request=None, responses=MarkAllReadSerializer)
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request: Request) -> Response:
        marked = services.notification_mark_all_read(user=self._user())
        return Response({"marked": marked})


class WebhookEndpointViewSet(viewsets.ModelViewSet):
    """Webhook endpoints of this organisation (admins). The secret is write-only:
    a generated one is returned once, as `signing_secret`, in the create response."""

    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.all()
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(responses={201: WebhookEndpointCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        given = fields.pop("secret", "")
        endpoint, secret = services.webhook_endpoint_create(
            actor=request.user, secret=given, **fields
        )
        data = dict(WebhookEndpointSerializer(endpoint).data)
        if not given:
            data["signing_secret"] = secret
        return Response(data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partial = kwargs.pop("partial", False)
        endpoint = self.get_object()
        serializer = self.get_serializer(endpoint, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(
            endpoint=endpoint, actor=request.user, **serializer.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.webhook_endpoint_delete(endpoint=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        qs = endpoint.deliveries.order_by("-created_at", "-pk")
        page = self.paginate_queryset(qs)
        data = WebhookDeliverySerializer(page if page is not None else qs, many=True)
        if page is not None:
            return self.get_paginated_response(data.data)
        return Response(data.data)
