"""The group's Comparison page: KPI cards per member, the verdict, hourly charts
(server-rendered SVG, each with a table of its numbers), the promotion rules' current
decision, promotion history, and Promote with a confirmation step. Every number is read
from the database (rollups, refreshed on the primary on the way in; the comparison is
read through the analytics alias, a replica when one is configured, while the rules'
decision reads the primary like the promotion it predicts)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.db import analytics_alias
from apps.core.errors import ApplicationError
from apps.groups.comparison import HOUR, group_comparison
from apps.groups.display import (
    DEFAULT_RANGE,
    RANGES,
    member_display,
    metric_text,
    svg_chart,
)
from apps.groups.models import Membership, ModelGroup
from apps.groups.promotion import group_promote, promotion_evaluate, promotion_history
from apps.groups.rollups import rollups_refresh


def _range(request: HttpRequest) -> str:
    value = request.GET.get("range", DEFAULT_RANGE)
    return value if value in RANGES else DEFAULT_RANGE


def _context(request: HttpRequest, group: ModelGroup) -> dict[str, Any]:
    chosen = _range(request)
    until = timezone.now()
    rollups_refresh(group=group)
    data = group_comparison(
        group=group,
        since=until - RANGES[chosen],
        until=until,
        secondary=True,
        using=analytics_alias(),
    )
    hours = []
    moment = data["since"]
    while moment < data["until"]:
        hours.append(moment)
        moment += HOUR
    charted = [m for m in data["members"] if m["requests"] or m["active"]]
    by_member = {m["member_id"]: {p["hour"]: p for p in m["series"]} for m in charted}
    requests_series = [
        {
            "label": m["label"],
            "values": [
                float(by_member[m["member_id"]].get(h, {}).get("requests", 0))
                for h in hours
            ],
        }
        for m in charted
    ]
    p95_series = [
        {
            "label": m["label"],
            "values": [
                by_member[m["member_id"]].get(h, {}).get("p95_ms") for h in hours
            ],
        }
        for m in charted
    ]
    table = [
        {
            "hour": h,
            "cells": [
                {
                    "requests": by_member[m["member_id"]].get(h, {}).get("requests", 0),
                    "p95_ms": by_member[m["member_id"]].get(h, {}).get("p95_ms"),
                }
                for m in charted
            ],
        }
        for h in hours
        if any(h in by_member[m["member_id"]] for m in charted)
    ]
    verdicts = {v["member_id"]: v for v in data["verdicts"]}
    for m in data["members"]:
        m["verdict"] = verdicts.get(m["member_id"])
        m["display"] = member_display(m, data["primary_metric"])
        m["secondary_rows"] = [
            (name, metric_text(est, name)) for name, est in m["secondary"].items()
        ]
    decision = promotion_evaluate(group=group)
    return {
        "group": group,
        "cmp": data,
        "ranges": list(RANGES),
        "chosen": chosen,
        "requests_chart": svg_chart(hours, requests_series, "requests"),
        "p95_chart": svg_chart(hours, p95_series, "p95_ms"),
        "charted": charted,
        "table": table,
        "decision": decision,
        "rules": group.promotion_rules or {},
        "history": list(promotion_history(group=group)[:20]),
        "can_edit": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
        "total_requests": sum(m["requests"] for m in data["members"]),
    }


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def comparison(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(ModelGroup, slug=slug)
    context = _context(request, group)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "groups/_comparison_body.html", context)
    return render(request, "groups/comparison.html", context)


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def promote(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the confirmation step with the numbers; POST: promote."""
    group = get_object_or_404(ModelGroup, slug=slug)
    source = request.POST if request.method == "POST" else request.GET
    try:
        member_id = int(source.get("member_id", ""))
    except ValueError:
        messages.error(request, "Choose a challenger to promote.")
        return redirect("analytics:comparison", slug=group.slug)
    member = get_object_or_404(
        Membership.objects.select_related("version__model"), group=group, pk=member_id
    )
    if request.method == "POST":
        try:
            group_promote(
                group=group,
                member=member_id,
                actor=request.user,
                retire_champion=source.get("retire_champion") == "on",
                reason=source.get("reason", "")[:2000],
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request,
                f"{member.version.model.name} v{member.version.number} is the "
                "champion now.",
            )
        return redirect("analytics:comparison", slug=group.slug)
    context = _context(request, group)
    context["member"] = member
    context["kpi"] = next(
        (m for m in context["cmp"]["members"] if m["member_id"] == member_id), None
    )
    return render(request, "groups/comparison_confirm.html", context)
