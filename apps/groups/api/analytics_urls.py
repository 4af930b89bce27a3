"""Analytics routes, relative to /api/v1/."""

from django.urls import path

from apps.groups.api.analytics_views import (
    GroupComparisonView,
    GroupPromoteView,
    GroupPromotionListView,
    PromotionRulesEvaluateView,
)

urlpatterns = [
    path(
        "groups/<slug:slug>/comparison/",
        GroupComparisonView.as_view(),
        name="group-comparison",
    ),
    path(
        "groups/<slug:slug>/promote/", GroupPromoteView.as_view(), name="group-promote"
    ),
    path(
        "groups/<slug:slug>/promotions/",
        GroupPromotionListView.as_view(),
        name="group-promotions",
    ),
    path(
        "groups/<slug:slug>/promotion-rules/evaluate/",
        PromotionRulesEvaluateView.as_view(),
        name="group-promotion-rules-evaluate",
    ),
]
