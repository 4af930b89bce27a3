"""Challenger vs champion over a time window: per-member KPIs from the hourly
rollups (labelled pairs from the raw table when a metric needs them) and the verdict
on the group's primary metric.

Every read goes through one database alias, `using`: the primary by default (the
promotions, which decide and lock), the analytics alias for pages and the API that
only show the numbers (`apps.core.db.analytics_alias`)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql

from apps.core.db import assert_tenant_schema
from apps.groups import stats
from apps.groups.models import MemberRollup, Membership, ModelGroup
from apps.inference.tables import table_exists, table_name

ROLLUP_METRICS = {"accuracy", "error_rate", "mae"}
PAIR_METRICS = {"precision", "recall", "f1", "auc", "rmse"}
HOUR = timedelta(hours=1)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def primary_metric_of(group: ModelGroup) -> str:
    metric = (group.primary_metric or "").strip().lower()
    return metric if metric in stats.METRICS else "error_rate"


def _mde(group: ModelGroup) -> float | None:
    rules = group.promotion_rules or {}
    value = rules.get("min_detectable_effect", rules.get("mde"))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _labelled_pairs(
    group: ModelGroup,
    since: datetime,
    until: datetime,
    *,
    using: str = DEFAULT_DB_ALIAS,
) -> dict[int, list[tuple[Any, Any, float | None, Any]]]:
    """{member_id: [(label, prediction, positive-class score, value)]} of ok rows
    with feedback in the window, read through the `using` alias."""
    if not table_exists(group.pk, using=using):
        return {}
    query = sql.SQL(
        "SELECT member_id, feedback->>'label', output->>'prediction', "
        "output->'probabilities', feedback->'value', output->'prediction' "
        "FROM {} WHERE ts >= %s AND ts < %s AND status = 'ok' "
        "AND feedback IS NOT NULL AND member_id IS NOT NULL ORDER BY ts, request_id"
    ).format(sql.Identifier(assert_tenant_schema(), table_name(group.pk)))
    out: dict[int, list[tuple[Any, Any, float | None, Any]]] = defaultdict(list)
    with connections[using].cursor() as cursor:
        cursor.execute(query, [since, until])
        for member_id, label, pred, probs, value, pred_json in cursor.fetchall():
            probs = json.loads(probs) if isinstance(probs, str) else probs
            score = None
            if isinstance(probs, dict) and probs:
                key = "1" if "1" in probs else sorted(probs)[-1]
                score = float(probs[key])
            value = json.loads(value) if isinstance(value, str) else value
            pred_json = (
                json.loads(pred_json) if isinstance(pred_json, str) else pred_json
            )
            out[member_id].append(
                (
                    label,
                    pred,
                    score,
                    (value, pred_json)
                    if isinstance(value, int | float)
                    and isinstance(pred_json, int | float)
                    else None,
                )
            )
    return out


def _pair_metric(metric: str, pairs: list[Any]) -> stats.Estimate:
    if metric == "rmse":
        reg = [p[3] for p in pairs if p[3] is not None]
        return stats.rmse([v for v, _ in reg], [p for _, p in reg])
    cls = [p for p in pairs if p[0] is not None]
    y_true, y_pred = [p[0] for p in cls], [p[1] for p in cls]
    if metric == "precision":
        return stats.precision(y_true, y_pred)
    if metric == "recall":
        return stats.recall(y_true, y_pred)
    if metric == "f1":
        return stats.f1(y_true, y_pred)
    scored = [p for p in cls if p[2] is not None]
    return stats.auc([p[0] for p in scored], [p[2] for p in scored])


def _pair_value(metric: str, pairs: list[Any], positive: Any) -> float | None:
    """The metric's point value on labelled pairs (no confidence interval)."""
    if metric == "rmse":
        reg = [p[3] for p in pairs if p[3] is not None]
        if not reg:
            return None
        return math.sqrt(sum((v - p) ** 2 for v, p in reg) / len(reg))
    cls = [p for p in pairs if p[0] is not None]
    y_true, y_pred = [p[0] for p in cls], [p[1] for p in cls]
    tp, fp, fn = stats._confusion(y_true, y_pred, positive)
    if metric == "precision":
        return tp / (tp + fp) if tp + fp else None
    if metric == "recall":
        return tp / (tp + fn) if tp + fn else None
    if metric == "f1":
        return stats._f1_value(y_true, y_pred, positive)
    scored = [p for p in cls if p[2] is not None]
    value = stats.auc_value([p[0] for p in scored], [p[2] for p in scored], positive)
    return None if math.isnan(value) else value


def _rollup_metric(metric: str, kpi: dict[str, Any]) -> stats.Estimate:
    if metric == "accuracy":
        return stats.wilson_interval(kpi["correct"], kpi["labelled"])
    if metric == "error_rate":
        return stats.wilson_interval(kpi["errors"], kpi["requests"])
    n = kpi["regression_n"]
    return stats.mae_from_sums(n, kpi["abs_error_sum"], kpi["sq_error_sum"])


def _compare(
    metric: str,
    champion: dict[str, Any],
    challenger: dict[str, Any],
    pairs: dict[int, list[Any]],
    mde: float | None,
) -> stats.Verdict:
    a, b = champion["primary"], challenger["primary"]
    est_a = stats.Estimate(**a)
    est_b = stats.Estimate(**b)
    required: int | None = None
    unit = "labelled requests"
    if metric in ("accuracy", "error_rate"):
        if metric == "accuracy":
            na, sa = champion["labelled"], champion["correct"]
            nb, sb = challenger["labelled"], challenger["correct"]
        else:
            unit = "requests"
            na, sa = champion["requests"], champion["errors"]
            nb, sb = challenger["requests"], challenger["errors"]
        test = stats.two_proportion_ztest(sa, na, sb, nb)
        mde = mde if mde is not None else stats.DEFAULT_MDE
        if est_a.value is not None:
            required = stats.sample_size_proportions(est_a.value, mde)
    elif metric == "mae":

        def moments(k: dict[str, Any]) -> tuple[float, float, int]:
            n = k["regression_n"]
            mean = k["abs_error_sum"] / n if n else 0.0
            var = (k["sq_error_sum"] - n * mean * mean) / (n - 1) if n > 1 else 0.0
            return mean, max(var, 0.0), n

        ma, va, na = moments(champion)
        mb, vb, nb = moments(challenger)
        test = stats.welch_ttest(ma, va, na, mb, vb, nb)
        if est_a.value is not None and na > 1:
            mde = mde if mde is not None else stats.DEFAULT_MDE_RELATIVE * ma
            required = stats.sample_size_means(math.sqrt(va), mde) if mde else None
    else:
        pa, pb = (
            pairs.get(champion["member_id"], []),
            pairs.get(challenger["member_id"], []),
        )

        positive_class = stats._positive([p[0] for p in pa + pb if p[0] is not None])

        def stat_of(rows: list[Any]) -> Any:
            # Point values only: a resample needs no interval of its own.
            return lambda idx: _pair_value(
                metric, [rows[i] for i in idx], positive_class
            )

        if metric in ("precision", "recall"):
            positive = stats._positive([p[0] for p in pa + pb if p[0] is not None])
            ta, fa, na_ = stats._confusion(
                [p[0] for p in pa], [p[1] for p in pa], positive
            )
            tb, fb, nb_ = stats._confusion(
                [p[0] for p in pb], [p[1] for p in pb], positive
            )
            if metric == "precision":
                test = stats.two_proportion_ztest(ta, ta + fa, tb, tb + fb)
            else:
                test = stats.two_proportion_ztest(ta, ta + na_, tb, tb + nb_)
        else:
            test = stats.bootstrap_difference_test(
                len(pa), len(pb), stat_of(pa), stat_of(pb)
            )
        if est_a.value is not None:
            if metric == "rmse":
                mde = (
                    mde if mde is not None else stats.DEFAULT_MDE_RELATIVE * est_a.value
                )
                errors = [p[3][1] - p[3][0] for p in pa if p[3] is not None]
                sd = (
                    math.sqrt(sum(e * e for e in errors) / max(len(errors) - 1, 1))
                    if errors
                    else 0.0
                )
                required = stats.sample_size_means(sd, mde) if mde else None
            else:
                mde = mde if mde is not None else stats.DEFAULT_MDE
                required = stats.sample_size_proportions(est_a.value, mde)
    return stats.decide(
        metric=metric,
        champion=est_a,
        challenger=est_b,
        test=test,
        required_per_arm=required,
        mde=mde,
        unit=unit,
    )


SECONDARY = {
    "classification": ("accuracy", "precision", "recall", "f1", "auc"),
    "regression": ("mae", "rmse"),
}


def _secondary(pairs: list[Any]) -> dict[str, dict[str, Any]]:
    """Every outcome metric the member's labelled pairs allow (drill-down: raw rows)."""
    out: dict[str, dict[str, Any]] = {}
    if any(p[0] is not None for p in pairs):
        cls = [p for p in pairs if p[0] is not None]
        out["accuracy"] = stats.accuracy(
            [p[0] for p in cls], [p[1] for p in cls]
        ).as_dict()
        for metric in SECONDARY["classification"][1:]:
            out[metric] = _pair_metric(metric, pairs).as_dict()
    reg = [p[3] for p in pairs if p[3] is not None]
    if reg:
        out["mae"] = stats.mae([v for v, _ in reg], [p for _, p in reg]).as_dict()
        out["rmse"] = _pair_metric("rmse", pairs).as_dict()
    return out


def group_comparison(
    *,
    group: ModelGroup,
    since: datetime,
    until: datetime,
    secondary: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> dict[str, Any]:
    """Per-member KPIs over [since, until) (widened to whole hours), an hourly series
    per member and the verdict of each active challenger against the champion.
    `secondary` adds every outcome metric per member from the raw labelled rows.
    `using` is the database alias every read goes to (a bound analytics alias, or
    the primary)."""
    since, until = floor_hour(since), ceil_hour(until)
    metric = primary_metric_of(group)
    memberships = {
        m.pk: m
        for m in Membership.objects.using(using)
        .filter(group=group)
        .select_related("version__model")
    }
    rollups = (
        MemberRollup.objects.using(using)
        .filter(group=group, bucket_start__gte=since, bucket_start__lt=until)
        .order_by("bucket_start", "member_id")
    )
    kpis: dict[int, dict[str, Any]] = {}

    def blank(member_id: int) -> dict[str, Any]:
        m = memberships.get(member_id)
        return {
            "member_id": member_id,
            "version_id": m.version_id if m else None,
            "label": f"{m.version.model.name} v{m.version.number}"
            if m
            else f"removed member {member_id}",
            "role": m.role if m else "",
            "active": m.active if m else False,
            "weight": m.weight if m else 0,
            "requests": 0,
            "errors": 0,
            "labelled": 0,
            "correct": 0,
            "regression_n": 0,
            "abs_error_sum": 0.0,
            "sq_error_sum": 0.0,
            "latency_sum_ms": 0.0,
            "hist": [0] * stats.HIST_SIZE,
            "series": [],
        }

    for member_id in memberships:
        kpis[member_id] = blank(member_id)
    for r in rollups:
        k = kpis.setdefault(r.member_id, blank(r.member_id))
        if r.member_id not in memberships and r.role:
            k["role"] = r.role
        k["requests"] += r.requests
        k["errors"] += r.errors
        k["labelled"] += r.labelled
        k["correct"] += r.correct
        k["abs_error_sum"] += r.abs_error_sum
        k["sq_error_sum"] += r.sq_error_sum
        k["regression_n"] += r.valued
        k["latency_sum_ms"] += r.latency_sum_ms
        k["hist"] = stats.hist_add(k["hist"], r.latency_hist)
        k["series"].append(
            {
                "hour": r.bucket_start,
                "requests": r.requests,
                "errors": r.errors,
                "p95_ms": stats.percentile_from_hist(r.latency_hist, 95),
            }
        )
    pairs = (
        _labelled_pairs(group, since, until, using=using)
        if metric in PAIR_METRICS or secondary
        else {}
    )
    members = []
    for k in kpis.values():
        hist = k.pop("hist")
        k["error_rate"] = stats.wilson_interval(k["errors"], k["requests"]).as_dict()
        k["p50_ms"] = stats.percentile_from_hist(hist, 50)
        k["p95_ms"] = stats.percentile_from_hist(hist, 95)
        k["p99_ms"] = stats.percentile_from_hist(hist, 99)
        k["mean_latency_ms"] = (
            k["latency_sum_ms"] / k["requests"] if k["requests"] else None
        )
        if metric in ROLLUP_METRICS:
            primary = _rollup_metric(metric, k)
        else:
            primary = _pair_metric(metric, pairs.get(k["member_id"], []))
        k["primary"] = primary.as_dict()
        if secondary:
            k["secondary"] = _secondary(pairs.get(k["member_id"], []))
        members.append(k)
    order = {"champion": 0, "challenger": 1, "shadow": 2}
    members.sort(
        key=lambda k: (not k["active"], order.get(k["role"], 3), k["member_id"])
    )
    champion = next(
        (k for k in members if k["role"] == "champion" and k["active"]), None
    )
    verdicts = []
    if champion is not None:
        for k in members:
            if k["role"] == "challenger" and k["active"]:
                verdict = _compare(metric, champion, k, pairs, _mde(group))
                verdicts.append({"member_id": k["member_id"], **verdict.as_dict()})
    return {
        "group": group.slug,
        "since": since,
        "until": until,
        "primary_metric": metric,
        "lower_is_better": metric in stats.LOWER_IS_BETTER,
        "members": members,
        "verdicts": verdicts,
        "champion_member_id": champion["member_id"] if champion else None,
    }
