"""Comparison, promotion and promotion-rule endpoints of a group."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role
from apps.core.db import analytics_alias
from apps.groups.api.analytics_serializers import (
    ComparisonQuerySerializer,
    ComparisonSerializer,
    DecisionSerializer,
    DryRunSerializer,
    PromoteInSerializer,
    PromotionSerializer,
)
from apps.groups.comparison import group_comparison
from apps.groups.models import ModelGroup, Promotion
from apps.groups.promotion import (
    group_promote,
    promotion_dry_run,
    promotion_evaluate,
    promotion_history,
)
from apps.groups.rollups import rollups_refresh

SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="Group slug.")


def _group(slug: str) -> ModelGroup:
    # Looked up in the request's schema: another tenant's group is a 404.
    return get_object_or_404(ModelGroup, slug=slug)


class GroupComparisonView(APIView):
    """Per-member KPIs over a window (default: the last 24 hours) and the verdict."""

    read_role = Role.VIEWER

    @extend_schema(
        operation_id="groups_comparison",
        parameters=[SLUG, ComparisonQuerySerializer],
        responses=ComparisonSerializer,
    )
    def get(self, request: Request, slug: str) -> Response:
        group = _group(slug)
        query = ComparisonQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        until = query.validated_data.get("until") or timezone.now()
        since = query.validated_data.get("since") or until - timedelta(hours=24)
        rollups_refresh(group=group)
        data = group_comparison(
            group=group,
            since=since,
            until=until,
            secondary=query.validated_data["secondary"],
            using=analytics_alias(),
        )
        return Response(ComparisonSerializer(data).data)


class GroupPromoteView(APIView):
    """Promote a challenger to champion (or, with dry_run, say what would happen)."""

    read_role = Role.EDITOR
    write_role = Role.EDITOR

    @extend_schema(
        operation_id="groups_promote",
        parameters=[SLUG],
        request=PromoteInSerializer,
        responses={201: PromotionSerializer, 200: DryRunSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        group = _group(slug)
        payload = PromoteInSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        rollups_refresh(group=group)
        if data["dry_run"]:
            preview = promotion_dry_run(group=group, member_id=data["member_id"])
            return Response(DryRunSerializer(preview).data)
        promotion = group_promote(
            group=group,
            member=data["member_id"],
            actor=request.user,
            retire_champion=data["retire_champion"],
            reason=data["reason"],
        )
        return Response(
            PromotionSerializer(promotion).data, status=status.HTTP_201_CREATED
        )


class GroupPromotionListView(generics.ListAPIView):
    """The group's promotions and rollbacks, newest first."""

    serializer_class = PromotionSerializer
    read_role = Role.VIEWER
    filter_backends: list[Any] = []

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Promotion.objects.none()
        return promotion_history(group=_group(self.kwargs["slug"]))

    @extend_schema(operation_id="groups_promotions_list", parameters=[SLUG])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class PromotionRulesEvaluateView(APIView):
    """What the group's promotion rules decide now, and why (a dry run)."""

    read_role = Role.VIEWER

    @extend_schema(
        operation_id="groups_promotion_rules_evaluate",
        parameters=[SLUG],
        responses=DecisionSerializer,
    )
    def get(self, request: Request, slug: str) -> Response:
        group = _group(slug)
        rollups_refresh(group=group)
        return Response(
            DecisionSerializer(promotion_evaluate(group=group).as_dict()).data
        )
