from typing import Any

from django.db import transaction
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role, Scope
from apps.accounts.throttling import PredictRateThrottle
from apps.core.doors import json_answer, json_body
from apps.core.errors import ApplicationError
from apps.groups import services
from apps.groups.api.serializers import (
    FeedbackInSerializer,
    FeedbackOutSerializer,
    GroupCreateSerializer,
    GroupSerializer,
    MembersSetSerializer,
    PredictInSerializer,
    PredictOutSerializer,
    StatusSerializer,
)
from apps.groups.models import ModelGroup
from apps.groups.serving import Prediction, predict
from apps.inference.writer import feedback_write


def requester_of(request: Request) -> str:
    return str(request.user)[:200] if request.user else ""


def served(prediction: Prediction) -> dict[str, Any]:
    return {
        "member_id": prediction.member.member_id,
        "version_id": prediction.version.id,
        "model": prediction.version.model_name,
        "version": prediction.version.number,
        "role": prediction.member.role,
        "fallback": prediction.fell_back,
    }


class GroupViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Model groups: champion, challengers and shadows behind one endpoint."""

    queryset = ModelGroup.objects.prefetch_related(
        "members__version__model"
    ).select_related("inference_table")
    serializer_class = GroupSerializer
    lookup_field = "slug"
    filterset_fields = ["status", "strategy"]

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return GroupCreateSerializer if self.action == "create" else GroupSerializer

    @transaction.atomic
    def perform_create(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        members = data.pop("initial_members", [])
        group = services.group_create(actor=self.request.user, **data)
        if members:
            services.members_set(group=group, members=members, actor=self.request.user)
        serializer.instance = self.get_queryset().get(pk=group.pk)

    def perform_update(self, serializer: Any) -> None:
        serializer.instance = services.group_update(
            group=serializer.instance,
            actor=self.request.user,
            **serializer.validated_data,
        )

    @extend_schema(request=MembersSetSerializer, responses=GroupSerializer)
    @action(detail=True, methods=["put"])
    def members(self, request: Request, slug: str) -> Response:
        """Replace the member list: bulk add, roles and weights in one audited step."""
        group = self.get_object()
        payload = MembersSetSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.members_set(
            group=group, members=payload.validated_data["members"], actor=request.user
        )
        return Response(GroupSerializer(self.get_queryset().get(pk=group.pk)).data)

    @extend_schema(request=StatusSerializer, responses=GroupSerializer)
    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request: Request, slug: str) -> Response:
        """Activate (provisions the inference table), pause or archive."""
        group = self.get_object()
        payload = StatusSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.group_set_status(
            group=group, status=payload.validated_data["status"], actor=request.user
        )
        return Response(GroupSerializer(self.get_queryset().get(pk=group.pk)).data)


class GroupPredictView(APIView):
    """One prediction (or a batch) routed to a member; logged before the answer."""

    key_scopes = (Scope.PREDICT, Scope.MANAGE)
    write_role = Role.VIEWER
    throttle_classes = [PredictRateThrottle]

    @extend_schema(request=PredictInSerializer, responses=PredictOutSerializer)
    def post(self, request: Request, slug: str) -> HttpResponseBase:
        payload = PredictInSerializer(data=json_body(request))
        payload.is_valid(raise_exception=True)
        result = predict(
            slug=slug,
            inputs=payload.validated_data["inputs"],
            routing_key=payload.validated_data.get("routing_key") or None,
            requester=requester_of(request),
            door="rest",
            request_id=request.request_id,  # type: ignore[attr-defined]
            explain=payload.validated_data["explain"],
        )
        body = {
            "request_id": result.request_id,
            "group": slug,
            "served": served(result),
            "outputs": result.outputs,
            "latency_ms": round(result.latency_ms, 3),
        }
        if payload.validated_data["explain"]:
            body["explanation"] = result.explanation
            if result.explanation_error:
                body["explanation_error"] = result.explanation_error
        return json_answer(request, body)


class GroupFeedbackView(APIView):
    """Ground truth for logged predictions, one or a batch; unknown ids are reported."""

    key_scopes = (Scope.PREDICT, Scope.MANAGE)
    write_role = Role.VIEWER

    @extend_schema(request=FeedbackInSerializer, responses=FeedbackOutSerializer)
    def post(self, request: Request, slug: str) -> Response:
        group = get_object_or_404(
            ModelGroup.objects.select_related("inference_table"), slug=slug
        )
        if not hasattr(group, "inference_table"):
            raise ApplicationError(
                f"Group '{slug}' has never been active: nothing logged.",
                code="no_inference_table",
                status_code=409,
            )
        payload = FeedbackInSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        report = feedback_write(group.pk, payload.validated_data["items"])
        code = (
            status.HTTP_200_OK
            if not report["unknown"] and not report["invalid"]
            else (status.HTTP_207_MULTI_STATUS)
        )
        return Response(report, status=code)
