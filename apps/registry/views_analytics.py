"""A model version's Analytics tab: traffic, latency percentiles and error rate per
hour, outcome metrics and global SHAP importance, over a chosen window. A version can
serve in several groups: the numbers add up the rollups of all its memberships
(refreshed on the primary on the way in); secondary metrics read the labelled raw
rows. Every read of the tab goes through the analytics alias (a replica when one is
configured)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.db import analytics_alias
from apps.groups import stats
from apps.groups.comparison import (
    HOUR,
    _labelled_pairs,
    _secondary,
    ceil_hour,
    floor_hour,
)
from apps.groups.display import RANGES, metric_text, ms, rate, svg_chart
from apps.groups.models import MemberRollup, Membership, ModelGroup
from apps.groups.rollups import rollups_refresh
from apps.inference.importance import version_importance
from apps.registry.models import ModelVersion

DEFAULT_RANGE = "24h"
MAX_CUSTOM = timedelta(days=92)


def _moment(value: str) -> datetime | None:
    """An ISO date-time (a `datetime-local` input's value is UTC here)."""
    parsed = parse_datetime(value.strip()) if value else None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def analytics_window(
    params: Any, now: datetime
) -> tuple[str, datetime, datetime, str | None]:
    """(range, since, until, error) from ?range=1h|24h|7d|30d|custom&since=&until=,
    widened to whole hours; a bad custom window falls back to 24 h and says why."""
    chosen = params.get("range", DEFAULT_RANGE)
    if chosen == "custom":
        since, until = (
            _moment(params.get("since", "")),
            _moment(params.get("until", "")),
        )
        error = None
        if since is None or until is None:
            error = "Give both ends of the custom range as date and time."
        elif since >= until:
            error = "The custom range must start before it ends."
        elif until - since > MAX_CUSTOM:
            error = "A custom range can span at most 92 days."
        if error is None and since is not None and until is not None:
            return "custom", floor_hour(since), ceil_hour(until), None
        chosen = DEFAULT_RANGE
        return chosen, floor_hour(now - RANGES[chosen]), ceil_hour(now), error
    if chosen not in RANGES:
        chosen = DEFAULT_RANGE
    return chosen, floor_hour(now - RANGES[chosen]), ceil_hour(now), None


def version_analytics_data(
    *,
    version: ModelVersion,
    since: datetime,
    until: datetime,
    using: str = DEFAULT_DB_ALIAS,
) -> dict[str, Any]:
    """Totals, an hourly series and per-group totals of a version over [since,
    until) (whole hours) from the rollups of every membership it has or had, read
    through the `using` alias."""
    memberships = list(
        Membership.objects.using(using).filter(version=version).select_related("group")
    )
    member_ids = [m.pk for m in memberships]
    rollups = list(
        MemberRollup.objects.using(using).filter(
            Q(version_id=version.pk) | Q(member_id__in=member_ids),
            bucket_start__gte=since,
            bucket_start__lt=until,
        )
    )
    rollups.sort(key=lambda r: (r.bucket_start, r.member_id))
    total: dict[str, Any] = {
        "requests": 0,
        "errors": 0,
        "labelled": 0,
        "correct": 0,
        "valued": 0,
        "abs_error_sum": 0.0,
        "sq_error_sum": 0.0,
        "latency_sum_ms": 0.0,
        "hist": [0] * stats.HIST_SIZE,
    }
    hourly: dict[datetime, dict[str, Any]] = {}
    per_group: dict[int, dict[str, Any]] = {}
    for r in rollups:
        for bucket in (
            total,
            hourly.setdefault(
                r.bucket_start,
                {"requests": 0, "errors": 0, "hist": [0] * stats.HIST_SIZE},
            ),
            per_group.setdefault(
                r.group_id,
                {"requests": 0, "errors": 0, "hist": [0] * stats.HIST_SIZE},
            ),
        ):
            bucket["requests"] += r.requests
            bucket["errors"] += r.errors
            bucket["hist"] = stats.hist_add(bucket["hist"], r.latency_hist)
        total["labelled"] += r.labelled
        total["correct"] += r.correct
        total["valued"] += r.valued
        total["abs_error_sum"] += r.abs_error_sum
        total["sq_error_sum"] += r.sq_error_sum
        total["latency_sum_ms"] += r.latency_sum_ms
    hist = total.pop("hist")
    total["error_rate"] = stats.wilson_interval(total["errors"], total["requests"])
    total["accuracy"] = stats.wilson_interval(total["correct"], total["labelled"])
    total["mae"] = stats.mae_from_sums(
        total["valued"], total["abs_error_sum"], total["sq_error_sum"]
    )
    for q in (50, 95, 99):
        total[f"p{q}_ms"] = stats.percentile_from_hist(hist, q)
    total["mean_latency_ms"] = (
        total["latency_sum_ms"] / total["requests"] if total["requests"] else None
    )
    series = []
    for hour in sorted(hourly):
        h = hourly[hour]
        series.append(
            {
                "hour": hour,
                "requests": h["requests"],
                "errors": h["errors"],
                "error_rate": h["errors"] / h["requests"] if h["requests"] else None,
                "p50_ms": stats.percentile_from_hist(h["hist"], 50),
                "p95_ms": stats.percentile_from_hist(h["hist"], 95),
                "p99_ms": stats.percentile_from_hist(h["hist"], 99),
            }
        )
    groups = {g.pk: g for g in ModelGroup.objects.using(using).filter(pk__in=per_group)}
    pairs: list[Any] = []
    for group_id in per_group:
        group = groups.get(group_id)
        if group is None:
            continue
        ids = {r.member_id for r in rollups if r.group_id == group_id}
        for member_id, rows in _labelled_pairs(
            group, since, until, using=using
        ).items():
            if member_id in ids:
                pairs.extend(rows)
    group_rows = []
    for group_id, g in per_group.items():
        group = groups.get(group_id)
        roles = sorted(
            {m.role for m in memberships if m.group_id == group_id and m.active}
        )
        group_rows.append(
            {
                "group": group,
                "roles": roles,
                "requests": g["requests"],
                "errors": g["errors"],
                "error_rate": stats.wilson_interval(g["errors"], g["requests"]),
                "p95_ms": stats.percentile_from_hist(g["hist"], 95),
            }
        )
    group_rows.sort(key=lambda row: -row["requests"])
    return {
        "since": since,
        "until": until,
        "total": total,
        "series": series,
        "groups": group_rows,
        "memberships": memberships,
        "secondary": _secondary(pairs),
    }


def _hours(since: datetime, until: datetime) -> list[datetime]:
    out, moment = [], since
    while moment < until:
        out.append(moment)
        moment += HOUR
    return out


def _context(request: HttpRequest, version: ModelVersion) -> dict[str, Any]:
    chosen, since, until, error = analytics_window(request.GET, timezone.now())
    for group in ModelGroup.objects.filter(members__version=version).distinct():
        rollups_refresh(group=group)
    db = analytics_alias()
    data = version_analytics_data(version=version, since=since, until=until, using=db)
    hours = _hours(since, until)
    by_hour = {p["hour"]: p for p in data["series"]}

    def line(label: str, key: str, scale: float = 1.0, fill: Any = None) -> dict:
        values = []
        for h in hours:
            v = by_hour.get(h, {}).get(key, fill)
            values.append(None if v is None else float(v) * scale)
        return {"label": label, "values": values}

    total = data["total"]
    outcome = []
    if total["labelled"]:
        outcome.append(
            ("accuracy", metric_text(total["accuracy"].as_dict(), "accuracy"))
        )
    if total["valued"]:
        outcome.append(("mae", metric_text(total["mae"].as_dict(), "mae")))
    secondary = [
        (name, metric_text(est, name))
        for name, est in data["secondary"].items()
        if name not in dict(outcome)
    ]
    importance = version_importance(version.pk, using=db)
    top = max((abs(r["mean_abs"]) for r in importance), default=0.0)
    bars = [
        {
            **r,
            "percent": round(100 * abs(r["mean_abs"]) / top, 1) if top else 0,
        }
        for r in importance
    ]
    return {
        "model": version.model,
        "version": version,
        "va": data,
        "ranges": [*RANGES, "custom"],
        "chosen": chosen,
        "error": error,
        "since_value": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"),
        "until_value": until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"),
        "display": {
            "requests": total["requests"],
            "errors": total["errors"],
            "error_rate": rate(total["error_rate"].as_dict()),
            "p50": ms(total["p50_ms"]),
            "p95": ms(total["p95_ms"]),
            "p99": ms(total["p99_ms"]),
            "mean": ms(total["mean_latency_ms"]),
        },
        "outcome": outcome,
        "secondary": secondary,
        "traffic_chart": svg_chart(
            hours,
            [line("requests", "requests", fill=0), line("errors", "errors", fill=0)],
            "requests",
        ),
        "latency_chart": svg_chart(
            hours,
            [line("p50", "p50_ms"), line("p95", "p95_ms"), line("p99", "p99_ms")],
            "ms",
        ),
        "error_chart": svg_chart(
            hours, [line("error rate %", "error_rate", 100.0)], "error_rate"
        ),
        "table": [
            {
                **p,
                "error_rate_text": "\u2013"
                if p["error_rate"] is None
                else f"{p['error_rate'] * 100:.2f} %",
                "p50": ms(p["p50_ms"]),
                "p95": ms(p["p95_ms"]),
                "p99": ms(p["p99_ms"]),
            }
            for p in data["series"]
        ],
        "group_rows": [
            {
                **g,
                "error_rate_text": rate(g["error_rate"].as_dict()),
                "p95": ms(g["p95_ms"]),
            }
            for g in data["groups"]
        ],
        "importance": bars,
        "importance_count": max((r["count"] for r in importance), default=0),
        "can_edit": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
    }


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def version_analytics(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """The Analytics fragment of one version (htmx) or the page around it."""
    version = get_object_or_404(
        ModelVersion.objects.select_related("model"), pk=pk, model__slug=slug
    )
    context = _context(request, version)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "registry/_version_analytics.html", context)
    return render(request, "registry/_version_analytics_page.html", context)
