"""Promotion: manual swap in one locked, audited transaction; rules (dry run and the
scheduled pass); canary rollback; the API; ten concurrent promotions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.core.errors import ApplicationError, ConflictError
from apps.groups.models import Membership, ModelGroup, Promotion
from apps.groups.promotion import (
    group_promote,
    promotion_auto,
    promotion_auto_tenant,
    promotion_evaluate,
)
from apps.groups.services import group_update
from tests.groups.analytics_helpers import members_of, write_row
from tests.groups.group_helpers import audit_of, demo_group  # noqa: F401

URLCONF = "tests.groups.analytics_helpers"


@pytest.fixture
def wired(settings: Any) -> None:
    settings.ROOT_URLCONF = URLCONF


def _traffic(group, *, champ_correct, chall_correct, n=100, chall_errors=0):
    """n labelled requests per arm in the last hour (correct ones as given)."""
    m = members_of(group)
    start = datetime.now(UTC) - timedelta(minutes=30)
    with schema_context("alpha"):  # the test started before this traffic
        ModelGroup.objects.filter(pk=group.pk).update(
            test_start=start - timedelta(hours=2)
        )
    for role, correct in (("champion", champ_correct), ("challenger", chall_correct)):
        member = m[role]
        for i in range(n):
            write_row(
                group.pk,
                at=start + timedelta(seconds=i),
                member_id=member.pk,
                version_id=member.version_id,
                role=role,
                latency_ms=10.0 + i % 7,
                prediction=1,
                label=1 if i < correct else 0,
            )
    for i in range(chall_errors):
        member = m["challenger"]
        write_row(
            group.pk,
            at=start + timedelta(seconds=200 + i),
            member_id=member.pk,
            version_id=member.version_id,
            role="challenger",
            latency_ms=3000.0,
            status="error",
        )


def _state(group) -> dict[int, tuple[str, int, bool]]:
    with schema_context("alpha"):
        return {
            m.pk: (m.role, m.weight, m.active)
            for m in Membership.objects.filter(group=group)
        }


def test_promote_swaps_roles_and_weights_and_records_audit(demo_group):  # noqa: F811
    m = members_of(demo_group)
    champ, chall = m["champion"], m["challenger"]
    _traffic(demo_group, champ_correct=60, chall_correct=90, n=100)

    with schema_context("alpha"):
        promotion = group_promote(
            group=demo_group, member=chall.pk, actor="alice", reason="better"
        )

    assert _state(demo_group) == {
        champ.pk: ("challenger", 20, True),
        chall.pk: ("champion", 80, True),
    }
    assert (promotion.kind, promotion.actor, promotion.reason) == (
        "manual",
        "alice",
        "better",
    )
    assert promotion.previous_champion_member_id == champ.pk
    evidence = {k["member_id"]: k for k in promotion.evidence["members"]}
    assert evidence[chall.pk]["labelled"] == 100
    assert evidence[chall.pk]["primary"]["value"] == pytest.approx(0.9)
    assert evidence[champ.pk]["primary"]["value"] == pytest.approx(0.6)
    assert audit_of(demo_group.pk)[-1] == ("group.promote", "alice")
    with schema_context("alpha"):
        assert ModelGroup.objects.get(pk=demo_group.pk).routing_version > (
            demo_group.routing_version
        )


def test_retiring_the_champion_gives_its_weight_to_the_new_one(
    demo_group,  # noqa: F811
):
    m = members_of(demo_group)
    with schema_context("alpha"):
        group_promote(
            group=demo_group,
            member=m["challenger"].pk,
            actor="alice",
            retire_champion=True,
        )
    assert _state(demo_group) == {
        m["champion"].pk: ("challenger", 0, False),
        m["challenger"].pk: ("champion", 100, True),
    }


def test_only_an_active_challenger_can_be_promoted(demo_group):  # noqa: F811
    m = members_of(demo_group)
    with (
        schema_context("alpha"),
        pytest.raises(ConflictError, match="only an active challenger"),
    ):
        group_promote(group=demo_group, member=m["champion"].pk, actor="alice")
    with (
        schema_context("alpha"),
        pytest.raises(ApplicationError, match="is not in group"),
    ):
        group_promote(group=demo_group, member=999999, actor="alice")


def test_rules_hold_while_samples_are_missing(demo_group):  # noqa: F811
    _traffic(demo_group, champ_correct=9, chall_correct=10, n=10)
    with schema_context("alpha"):
        group_update(
            group=demo_group, actor="t", promotion_rules={"min_samples_per_arm": 50}
        )
        decision = promotion_auto(group=ModelGroup.objects.get(pk=demo_group.pk))
    assert decision.action == "hold"
    checks = {c.name: c for c in decision.checks}
    assert not checks["min_samples_per_arm"].passed
    assert checks["min_samples_per_arm"].value == 10
    assert decision.verdict["verdict"] == "needs_more_data"
    assert decision.verdict["message"].startswith("Needs ")
    assert _state(demo_group)[members_of(demo_group)["champion"].pk][0] == "champion"


def test_scheduled_rules_promote_when_every_rule_passes(demo_group):  # noqa: F811
    m = members_of(demo_group)
    _traffic(demo_group, champ_correct=50, chall_correct=95, n=100)
    with schema_context("alpha"):
        group_update(
            group=demo_group,
            actor="t",
            promotion_rules={
                "min_samples_per_arm": 50,
                "min_lift": 0.1,
                "max_p_value": 0.01,
                "max_error_rate": 0.05,
                "min_detectable_effect": 0.3,
            },
        )
        dry = promotion_evaluate(group=ModelGroup.objects.get(pk=demo_group.pk))
        assert dry.action == "promote", dry.reasons
        assert _state(demo_group)[m["champion"].pk][0] == "champion"  # dry run
        assert promotion_auto_tenant() == {demo_group.slug: "promote"}
        promotion = Promotion.objects.get(group=demo_group)
    assert promotion.kind == "auto" and promotion.member_id == m["challenger"].pk
    assert _state(demo_group)[m["challenger"].pk][:2] == ("champion", 80)
    assert audit_of(demo_group.pk)[-1] == (
        "group.auto_promote",
        "system:auto-promotion",
    )


def test_a_canary_whose_guardrail_fails_is_rolled_back(demo_group):  # noqa: F811
    m = members_of(demo_group)
    _traffic(demo_group, champ_correct=50, chall_correct=50, n=20, chall_errors=10)
    with schema_context("alpha"):
        group_update(
            group=demo_group,
            actor="t",
            strategy="canary",
            promotion_rules={"max_error_rate": 0.1, "max_p95_latency_ms": 1000},
        )
        decision = promotion_auto(group=ModelGroup.objects.get(pk=demo_group.pk))
        promotion = Promotion.objects.get(group=demo_group)
    assert decision.action == "rollback"
    assert any("error rate" in r for r in decision.reasons)
    assert promotion.kind == "rollback"
    assert _state(demo_group) == {
        m["champion"].pk: ("champion", 100, True),
        m["challenger"].pk: ("challenger", 0, False),
    }
    assert audit_of(demo_group.pk)[-1] == (
        "group.rollback",
        "system:canary-guardrail",
    )


def test_promote_api_dry_run_then_promote_then_history(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    api_client,
    wired,
):
    m = members_of(demo_group)
    editor = api_client(tenant_a, user=make_user(tenant_a, "editor"))
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    url = f"/api/v1/groups/{demo_group.slug}/"

    dry = editor.post(
        url + "promote/",
        {"member_id": m["challenger"].pk, "dry_run": True},
        format="json",
    )
    assert dry.status_code == 200, dry.content
    assert dry.json()["allowed"] is True
    assert dry.json()["rules"]["action"] == "hold"
    assert _state(demo_group)[m["champion"].pk][0] == "champion"

    refused = viewer.post(
        url + "promote/", {"member_id": m["challenger"].pk}, format="json"
    )
    assert refused.status_code == 403

    bad = editor.post(url + "promote/", {"member_id": "x"}, format="json")
    assert bad.status_code == 400
    assert "member_id" in bad.json()["error"]["fields"]

    done = editor.post(
        url + "promote/", {"member_id": m["challenger"].pk}, format="json"
    )
    assert done.status_code == 201, done.content
    again = editor.post(
        url + "promote/", {"member_id": m["challenger"].pk}, format="json"
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    history = viewer.get(url + "promotions/")
    assert history.status_code == 200
    [item] = history.json()["results"]
    assert item["member_id"] == m["challenger"].pk and item["kind"] == "manual"

    evaluate = viewer.get(url + "promotion-rules/evaluate/")
    assert evaluate.status_code == 200
    assert evaluate.json()["action"] == "hold"


def test_comparison_api_is_tenant_scoped(
    demo_group,  # noqa: F811
    tenant_b,
    make_user,
    api_client,
    wired,
):
    other = api_client(tenant_b, user=make_user(tenant_b, "viewer"))
    response = other.get(f"/api/v1/groups/{demo_group.slug}/comparison/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_ten_concurrent_promotions_leave_exactly_one_champion(
    django_db_setup,
    django_db_blocker,
):
    from apps.tenants.demo import seed_demo_content
    from apps.tenants.services import tenant_create, tenant_delete

    with django_db_blocker.unblock():
        tenant_create(
            slug="promo",
            name="Promo",
            admin_email="a@promo.test",
            domains=["promo.test"],
        )
        try:
            with schema_context("promo"):
                group = seed_demo_content(actor="test")
                challenger = group.members.get(role="challenger").pk
            barrier = threading.Barrier(10)
            outcomes: list[str] = []
            lock = threading.Lock()

            def promote() -> None:
                try:
                    barrier.wait()
                    with schema_context("promo"):
                        group_promote(group=group, member=challenger, actor="race")
                    result = "promoted"
                except ConflictError:
                    result = "conflict"
                except Exception as exc:
                    result = f"error: {exc!r}"
                finally:
                    connection.close()
                with lock:
                    outcomes.append(result)

            threads = [threading.Thread(target=promote) for _ in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            with schema_context("promo"):
                champions = list(
                    Membership.objects.filter(
                        group=group, role="champion", active=True
                    ).values_list("pk", flat=True)
                )
                promotions = Promotion.objects.filter(group=group).count()
        finally:
            connection.set_schema_to_public()
            tenant_delete(slug="promo")
    assert sorted(outcomes) == ["conflict"] * 9 + ["promoted"]
    assert champions == [challenger]
    assert promotions == 1
