"""The group's Comparison page: KPI cards per member, the verdict, hourly charts
(server-rendered SVG, each with a table of its numbers), the promotion rules' current
decision, promotion history, and Promote with a confirmation step. Every number is read
from the database (rollups, refreshed on the way in)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.groups.comparison import HOUR, group_comparison
from apps.groups.models import Membership, ModelGroup
from apps.groups.promotion import group_promote, promotion_evaluate, promotion_history
from apps.groups.rollups import rollups_refresh

RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
DASH = "\u2013"  # en dash: ranges and missing values
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 640, 200, 48, 24, 10


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def svg_chart(
    hours: list[datetime], series: list[dict[str, Any]], key: str
) -> dict[str, Any]:
    """Polylines (x, y in the SVG box) for each member's hourly `key`; gaps where a
    value is missing. Pure layout: the numbers are the ones given."""
    values = [v for s in series for v in s["values"] if v is not None]
    top = _nice_max(max(values, default=0.0))
    inner_w, inner_h = CHART_W - PAD_L - 8, CHART_H - PAD_B - PAD_T
    step = inner_w / max(len(hours) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return round(PAD_L + i * step, 1), round(PAD_T + inner_h * (1 - v / top), 1)

    lines = []
    for index, s in enumerate(series):
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s["values"]):
            if v is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(xy(i, v))
        lines.append(
            {
                "label": s["label"],
                "css": f"cmp-s{index % 6}",
                "segments": [
                    " ".join(f"{x},{y}" for x, y in seg)
                    for seg in segments
                    if len(seg) > 1
                ],
                "dots": [
                    {"x": x, "y": y}
                    for seg in segments
                    if len(seg) == 1
                    for x, y in seg
                ],
            }
        )
    ticks = [
        {"y": PAD_T + inner_h - f * inner_h, "label": f"{top * f:g}"}
        for f in (0, 0.5, 1)
    ]
    return {
        "width": CHART_W,
        "height": CHART_H,
        "lines": lines,
        "ticks": ticks,
        "x0": PAD_L,
        "x1": CHART_W - 8,
        "y_base": PAD_T + inner_h,
        "first": hours[0] if hours else None,
        "last": hours[-1] if hours else None,
        "label_y": CHART_H - 6,
    }


def _ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} ms"


def _rate(est: dict[str, Any]) -> str:
    if est["value"] is None:
        return DASH
    return f"{est['value'] * 100:.2f} % [{est['low'] * 100:.2f}{DASH}{est['high'] * 100:.2f}]"


def _metric(est: dict[str, Any], metric: str) -> str:
    if est["value"] is None:
        return DASH + " (no labelled requests)" if metric != "error_rate" else DASH
    if metric in ("mae", "rmse", "auc", "f1"):
        low = DASH if est["low"] is None else f"{est['low']:.4f}"
        high = DASH if est["high"] is None else f"{est['high']:.4f}"
        return f"{est['value']:.4f} [{low}{DASH}{high}] (n={est['n']})"
    if est["low"] is None:
        return f"{est['value'] * 100:.2f} % (n={est['n']})"
    return f"{_rate(est)} (n={est['n']})"


def member_display(m: dict[str, Any], metric: str | None = None) -> dict[str, str]:
    """The strings the cards show (95 % intervals in brackets)."""
    return {
        "error_rate": _rate(m["error_rate"]),
        "p50": _ms(m["p50_ms"]),
        "p95": _ms(m["p95_ms"]),
        "p99": _ms(m["p99_ms"]),
        "mean": _ms(m["mean_latency_ms"]),
        "primary": _metric(m["primary"], metric or m.get("metric", "")),
    }


def _range(request: HttpRequest) -> str:
    value = request.GET.get("range", DEFAULT_RANGE)
    return value if value in RANGES else DEFAULT_RANGE


def _context(request: HttpRequest, group: ModelGroup) -> dict[str, Any]:
    chosen = _range(request)
    until = timezone.now()
    rollups_refresh(group=group)
    data = group_comparison(
        group=group, since=until - RANGES[chosen], until=until, secondary=True
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
            (name, _metric(est, name)) for name, est in m["secondary"].items()
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
