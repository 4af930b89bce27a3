"""Changing the champion: by hand (`group_promote`), by rules (`promotion_evaluate`
and `promotion_auto`), and rolling a failing canary back. Every change happens in one
transaction with the group and its memberships locked, and is audited with the
comparison numbers of that moment."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import actor_label, audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, ConflictError
from apps.groups import stats
from apps.groups.comparison import group_comparison
from apps.groups.models import Membership, ModelGroup, Promotion
from apps.groups.rollups import rollups_refresh
from apps.groups.services import _check_now
from apps.groups.serving import forget_route
from apps.notifications.services import promotion_on_commit

RULE_KEYS = (
    "min_samples_per_arm",
    "min_lift",
    "max_p_value",
    "max_error_rate",
    "max_p95_latency_ms",
)


def _snapshot(group: ModelGroup) -> list[dict[str, Any]]:
    return [
        {
            "member_id": m.pk,
            "version": m.version_id,
            "role": m.role,
            "weight": m.weight,
            "active": m.active,
        }
        for m in Membership.objects.filter(group=group).order_by("id")
    ]


def evaluation_window(group: ModelGroup) -> tuple[datetime, datetime]:
    """From the later of the test start and the last promotion, to now."""
    now = timezone.now()
    starts = [group.test_start or group.created_at]
    last = group.promotions.order_by("-created_at").first()
    if last is not None:
        starts.append(last.created_at)
    return max(starts), now


def _evidence(comparison: dict[str, Any], member_id: int | None) -> dict[str, Any]:
    """The numbers of the decision, JSON-ready."""

    def member(k: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "member_id",
            "version_id",
            "role",
            "requests",
            "errors",
            "labelled",
            "error_rate",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "primary",
        )
        return {key: k[key] for key in keys}

    return {
        "window": {
            "since": comparison["since"].isoformat(),
            "until": comparison["until"].isoformat(),
        },
        "primary_metric": comparison["primary_metric"],
        "members": [member(k) for k in comparison["members"]],
        "verdict": next(
            (v for v in comparison["verdicts"] if v["member_id"] == member_id), None
        ),
    }


@transaction.atomic
def group_promote(
    *,
    group: ModelGroup,
    member: Membership | int,
    actor: Any,
    retire_champion: bool = False,
    reason: str = "",
    kind: str = Promotion.Kind.MANUAL,
) -> Promotion:
    """Challenger -> champion; the old champion becomes a challenger with the new
    champion's old weight (or is retired, its weight going to the new champion)."""
    assert_tenant_schema()
    rollups_refresh(group=group)  # the evidence is the numbers of this moment
    group = ModelGroup.objects.select_for_update().get(pk=group.pk)
    members = {
        m.pk: m
        for m in Membership.objects.select_for_update()
        .filter(group=group)
        .order_by("id")
    }
    member_id = member if isinstance(member, int) else member.pk
    target = members.get(member_id)
    if target is None:
        raise ApplicationError(
            f"Member {member_id} is not in group '{group.slug}'.",
            code="invalid",
            fields={"member_id": ["not a member of this group"]},
        )
    if target.role != Membership.Role.CHALLENGER or not target.active:
        raise ConflictError(
            f"Member {member_id} is {'an inactive' if not target.active else 'a'} "
            f"{target.role}; only an active challenger can be promoted.",
            fields={"member_id": [f"{target.role}, active={target.active}"]},
        )
    champion = next(
        (m for m in members.values() if m.role == "champion" and m.active), None
    )
    since, until = evaluation_window(group)
    comparison = group_comparison(group=group, since=since, until=until)
    before = _snapshot(group)
    new_weight = champion.weight if champion else 100
    if champion is not None:
        old_weight = target.weight
        champion.role = Membership.Role.CHALLENGER
        if retire_champion:
            champion.active = False
            champion.weight = 0
            new_weight = new_weight + old_weight
        else:
            champion.weight = old_weight
        champion.save(update_fields=["role", "active", "weight"])
    target.role = Membership.Role.CHAMPION
    target.weight = new_weight
    target.save(update_fields=["role", "weight"])
    ModelGroup.objects.filter(pk=group.pk).update(
        routing_version=F("routing_version") + 1
    )
    forget_route(group.slug)
    _check_now()
    evidence = _evidence(comparison, target.pk)
    label, _ = actor_label(actor)
    promotion = Promotion.objects.create(
        group=group,
        kind=kind,
        member_id=target.pk,
        version_id=target.version_id,
        previous_champion_member_id=champion.pk if champion else None,
        previous_champion_version_id=champion.version_id if champion else None,
        retired_champion=retire_champion,
        actor=label[:254],
        reason=reason,
        evidence=evidence,
    )
    audit_record(
        actor=actor,
        action="group.promote" if kind != Promotion.Kind.AUTO else "group.auto_promote",
        obj=group,
        before={"members": before},
        after={
            "members": _snapshot(group),
            "promotion": promotion.pk,
            "reason": reason,
            "evidence": evidence,
        },
    )
    promotion_on_commit(promotion=promotion)
    return promotion


@transaction.atomic
def group_rollback(
    *, group: ModelGroup, member: Membership | int, actor: Any, reason: str
) -> Promotion:
    """Take a challenger out of traffic (weight 0, inactive); its weight goes to the
    champion."""
    assert_tenant_schema()
    rollups_refresh(group=group)
    group = ModelGroup.objects.select_for_update().get(pk=group.pk)
    members = {
        m.pk: m for m in Membership.objects.select_for_update().filter(group=group)
    }
    member_id = member if isinstance(member, int) else member.pk
    target = members.get(member_id)
    champion = next(
        (m for m in members.values() if m.role == "champion" and m.active), None
    )
    if target is None or target.role != "challenger" or not target.active:
        raise ConflictError(
            f"Member {member_id} is not an active challenger of '{group.slug}'.",
            fields={"member_id": ["not an active challenger"]},
        )
    if champion is None:
        raise ConflictError(
            "The group has no active champion to take the traffic back."
        )
    since, until = evaluation_window(group)
    comparison = group_comparison(group=group, since=since, until=until)
    before = _snapshot(group)
    champion.weight += target.weight
    champion.save(update_fields=["weight"])
    target.weight = 0
    target.active = False
    target.save(update_fields=["weight", "active"])
    ModelGroup.objects.filter(pk=group.pk).update(
        routing_version=F("routing_version") + 1
    )
    forget_route(group.slug)
    _check_now()
    evidence = _evidence(comparison, target.pk)
    label, _ = actor_label(actor)
    promotion = Promotion.objects.create(
        group=group,
        kind=Promotion.Kind.ROLLBACK,
        member_id=target.pk,
        version_id=target.version_id,
        previous_champion_member_id=champion.pk,
        previous_champion_version_id=champion.version_id,
        actor=label[:254],
        reason=reason,
        evidence=evidence,
    )
    audit_record(
        actor=actor,
        action="group.rollback",
        obj=group,
        before={"members": before},
        after={"members": _snapshot(group), "reason": reason, "evidence": evidence},
    )
    promotion_on_commit(promotion=promotion)
    return promotion


@dataclass
class Check:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str


@dataclass
class Decision:
    action: str  # promote | rollback | hold
    member_id: int | None
    reasons: list[str]
    checks: list[Check] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = self.since.isoformat() if self.since else None
        out["until"] = self.until.isoformat() if self.until else None
        return out


def _float(rules: dict[str, Any], key: str) -> float | None:
    try:
        return float(rules[key]) if rules.get(key) is not None else None
    except (TypeError, ValueError):
        return None


def promotion_evaluate(
    *, group: ModelGroup, comparison: dict[str, Any] | None = None
) -> Decision:
    """What the group's promotion rules decide now, and why (changes nothing)."""
    rules = group.promotion_rules or {}
    since, until = evaluation_window(group)
    if comparison is None:
        rollups_refresh(group=group)
        comparison = group_comparison(group=group, since=since, until=until)
    champion = next(
        (
            k
            for k in comparison["members"]
            if k["member_id"] == comparison["champion_member_id"]
        ),
        None,
    )
    if champion is None or not comparison["verdicts"]:
        return Decision(
            "hold",
            None,
            ["The group needs an active champion and challenger."],
            since=since,
            until=until,
        )
    # The challenger with the most evidence is the one judged.
    verdict = max(
        comparison["verdicts"],
        key=lambda v: (v["challenger"] or {}).get("n") or 0,
    )
    challenger = next(
        k for k in comparison["members"] if k["member_id"] == verdict["member_id"]
    )
    checks: list[Check] = []
    metric = comparison["primary_metric"]
    lower = metric in stats.LOWER_IS_BETTER

    # Guardrails on the challenger.
    max_err = _float(rules, "max_error_rate")
    if max_err is not None:
        rate = challenger["error_rate"]["value"]
        ok = rate is None or rate <= max_err
        checks.append(
            Check(
                "max_error_rate",
                ok,
                rate,
                max_err,
                f"challenger error rate {_fmt(rate)} vs at most {max_err:g}",
            )
        )
    max_p95 = _float(rules, "max_p95_latency_ms")
    if max_p95 is not None:
        p95 = challenger["p95_ms"]
        ok = p95 is None or p95 <= max_p95
        checks.append(
            Check(
                "max_p95_latency_ms",
                ok,
                p95,
                max_p95,
                f"challenger p95 {_fmt(p95)} ms vs at most {max_p95:g} ms",
            )
        )
    guardrail_failed = [c for c in checks if not c.passed]

    # Evidence that the challenger wins.
    n_min = min((champion["primary"]["n"] or 0), (challenger["primary"]["n"] or 0))
    min_samples = _float(rules, "min_samples_per_arm")
    required = verdict["required_per_arm"]
    threshold = max(min_samples or 0, required or 0) or None
    checks.append(
        Check(
            "min_samples_per_arm",
            threshold is not None and n_min >= threshold,
            float(n_min),
            threshold,
            f"smaller arm has {n_min} samples; needs {threshold:g}"
            if threshold
            else "no sample size yet (no baseline)",
        )
    )
    a, b = champion["primary"]["value"], challenger["primary"]["value"]
    lift = None if a is None or b is None else (a - b if lower else b - a)
    min_lift = _float(rules, "min_lift") or 0.0
    checks.append(
        Check(
            "min_lift",
            lift is not None and lift > 0 and lift >= min_lift,
            lift,
            min_lift,
            f"lift of the challenger on {metric}: {_fmt(lift)} "
            f"(needs > 0 and >= {min_lift:g})",
        )
    )
    p_value = (verdict.get("test") or {}).get("p_value")
    max_p = _float(rules, "max_p_value")
    max_p = stats.ALPHA if max_p is None else max_p
    checks.append(
        Check(
            "max_p_value",
            p_value is not None and p_value <= max_p,
            p_value,
            max_p,
            f"p-value {_fmt(p_value)} vs at most {max_p:g}",
        )
    )
    reasons = [c.message for c in checks if not c.passed]
    if guardrail_failed and challenger["requests"] > 0:
        action = "rollback" if group.strategy == ModelGroup.Strategy.CANARY else "hold"
        reasons = [f"guardrail failed: {c.message}" for c in guardrail_failed]
    elif all(c.passed for c in checks):
        action = "promote"
        reasons = [f"all rules pass: {verdict['message']}"]
    else:
        action = "hold"
    return Decision(
        action, challenger["member_id"], reasons, checks, verdict, since, until
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def promotion_auto(*, group: ModelGroup) -> Decision:
    """Apply the rules: promote when they all pass (groups with rules only), roll a
    canary back when a guardrail fails."""
    decision = promotion_evaluate(group=group)
    rules = group.promotion_rules or {}
    if not rules or decision.member_id is None:
        return decision
    try:
        if decision.action == "promote" and rules.get("auto_promote", True):
            group_promote(
                group=group,
                member=decision.member_id,
                actor="system:auto-promotion",
                reason="; ".join(decision.reasons),
                kind=Promotion.Kind.AUTO,
            )
        elif decision.action == "rollback":
            group_rollback(
                group=group,
                member=decision.member_id,
                actor="system:canary-guardrail",
                reason="; ".join(decision.reasons),
            )
    except ApplicationError as exc:  # someone changed the members meanwhile
        decision.reasons.append(f"not applied: {exc.message}")
        decision.action = "hold"
    return decision


def promotion_auto_tenant() -> dict[str, str]:
    """Tenant task: the rules of every active group of this schema."""
    out = {}
    for group in ModelGroup.objects.filter(
        status=ModelGroup.Status.ACTIVE, inference_table__isnull=False
    ):
        out[group.slug] = promotion_auto(group=group).action
    return out


def promotion_dry_run(*, group: ModelGroup, member_id: int) -> dict[str, Any]:
    """What promoting `member_id` now would meet: whether it is allowed, and what the
    group's rules say (nothing changes)."""
    member = Membership.objects.filter(group=group, pk=member_id).first()
    problem = ""
    if member is None:
        problem = f"Member {member_id} is not in group '{group.slug}'."
    elif member.role != Membership.Role.CHALLENGER or not member.active:
        problem = (
            f"Member {member_id} is {'an inactive' if not member.active else 'a'} "
            f"{member.role}; only an active challenger can be promoted."
        )
    return {
        "dry_run": True,
        "member_id": member_id,
        "allowed": not problem,
        "problem": problem,
        "rules": promotion_evaluate(group=group).as_dict(),
    }


def promotion_history(*, group: ModelGroup) -> Any:
    return Promotion.objects.filter(group=group).order_by("-created_at", "-id")
