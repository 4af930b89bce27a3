"""Models list → model → each version's Analytics tab, and the group's Comparison
page: every number read off the rendered page equals SQL over the group's inference
table for the window the page states. Then a promotion through the confirmation
step, checked in the database and the audit trail."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from apps.groups import stats
from apps.groups.display import metric_text, ms, rate
from apps.tenants.demo import DEMO_GROUP, DEMO_MODEL
from tests.browser.conftest import TRAFFIC, artifact, screenshot
from tests.groups.analytics_helpers import members_of, raw_member_numbers
from tests.groups.group_helpers import audit_of

# One xdist worker runs them all: they share one server, tenant and browser.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _group(live: Any) -> Any:
    from apps.groups.models import ModelGroup

    with schema_context(live.slug):
        return ModelGroup.objects.get(pk=live.group_id)


def _raw_version(
    live: Any, version_id: int, since: datetime, until: datetime
) -> dict[str, Any]:
    """One version's numbers over [since, until), and how many of its inferences
    were ever explained, straight from the group's table."""
    with schema_context(live.slug), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status <> 'ok'), "
            f"count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label'), "
            f"count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label' "
            f"AND output->>'prediction' = feedback->>'label'), "
            f"avg(latency_ms) "
            f"FROM inference_log_g{int(live.group_id)} "
            f"WHERE version_id = %s AND ts >= %s AND ts < %s",
            [version_id, since, until],
        )
        row = cursor.fetchone()
        cursor.execute(
            f"SELECT count(*) FROM inference_log_g{int(live.group_id)} "
            f"WHERE version_id = %s AND explanation IS NOT NULL",
            [version_id],
        )
        (explained,) = cursor.fetchone()
    keys = ("requests", "errors", "labelled", "correct", "mean")
    out = dict(zip(keys, row, strict=True), explained=explained)
    out.update(_percentiles(live, "version_id", since, until)[version_id])
    return out


def _percentiles(
    live: Any, column: str, since: datetime, until: datetime
) -> dict[int, dict[str, float]]:
    """Nearest-rank p50 and p95 latency per member or version (what a latency
    histogram approximates, whatever the number of requests)."""
    with schema_context(live.slug), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column}, "
            f"percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            f"percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM inference_log_g{int(live.group_id)} "
            f"WHERE ts >= %s AND ts < %s GROUP BY 1",
            [since, until],
        )
        return {key: {"p50": p50, "p95": p95} for key, p50, p95 in cursor.fetchall()}


def _within_a_bucket(shown: str, exact: float) -> None:
    """Percentiles come from the rollups' latency histogram: within one bucket of
    the exact nearest-rank value."""
    value = float(shown.split()[0])
    assert exact / stats.LATENCY_RATIO - 0.05 <= value, (shown, exact)
    assert value <= exact * stats.LATENCY_RATIO + 0.05, (shown, exact)


def _text(locator: Any) -> str:
    return (locator.text_content() or "").strip()


def _reveal(page: Any, version_id: int) -> None:
    """Scroll to a version's analytics until its panel has replaced the placeholder,
    as a reader would: the placeholder loads when it comes into view, and the other
    version's panel, loading above it at the same moment, can push it out of view
    again before it is seen."""
    placeholder = page.locator(f"#va-{version_id}")
    for _ in range(20):
        placeholder.scroll_into_view_if_needed()
        if page.locator(f"#va-{version_id}.va-panel").count():
            return
        page.wait_for_timeout(500)


def test_models_list_to_version_analytics_numbers_equal_sql(
    admin_page, traffic, django_db_blocker, request
):
    page = admin_page
    page.goto(f"{traffic.url}/")
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Models"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Models")
    screenshot(page, f"{request.node.name}-list")
    page.get_by_role("link", name=DEMO_MODEL).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(DEMO_MODEL)

    with django_db_blocker.unblock():
        members = members_of(_group(traffic), schema=traffic.slug)
    served = 0
    for role in ("champion", "challenger"):
        version_id = members[role].version_id
        with django_db_blocker.unblock(), schema_context(traffic.slug):
            from apps.registry.models import ModelVersion

            number = ModelVersion.objects.get(pk=version_id).number
        details = page.locator(f"details#v{number}")
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        panel = page.locator(f"#va-{version_id}.va-panel")
        _reveal(page, version_id)
        expect(panel.locator("dl.va-kpis dd[data-va=requests]")).to_be_visible()
        since = parse_datetime(panel.get_attribute("data-since"))
        until = parse_datetime(panel.get_attribute("data-until"))
        with django_db_blocker.unblock():
            sql = _raw_version(traffic, version_id, since, until)
        assert sql["requests"] > 0, f"{role} got no traffic"
        served += sql["requests"]

        def kpi(name: str, panel: Any = panel) -> str:
            return _text(panel.locator(f"dl.va-kpis dd[data-va={name}]").first)

        assert int(kpi("requests")) == sql["requests"]
        assert int(kpi("errors")) == sql["errors"]
        assert int(kpi("labelled")) == sql["labelled"]
        assert kpi("error_rate") == rate(
            stats.wilson_interval(sql["errors"], sql["requests"]).as_dict()
        )
        assert kpi("mean_ms") == ms(sql["mean"])
        _within_a_bucket(kpi("p50_ms"), sql["p50"])
        _within_a_bucket(kpi("p95_ms"), sql["p95"])
        assert kpi("accuracy") == metric_text(
            stats.wilson_interval(sql["correct"], sql["labelled"]).as_dict(),
            "accuracy",
        )
        hourly = sum(
            int(_text(cell))
            for cell in panel.locator("details.va-table td[data-va=requests]").all()
        )
        assert hourly == sql["requests"]
        # Every explained inference of the version feeds its global SHAP importance.
        importance = panel.locator(".va-importance")
        if sql["explained"]:
            expect(importance).to_contain_text(
                f"Mean |SHAP| over {sql['explained']} explained inference"
            )
            expect(importance.locator("ul.importance li")).to_have_count(30)
        else:
            expect(importance).to_contain_text("No explained inferences yet.")
        panel.screenshot(path=str(artifact(f"{request.node.name}-{role}")))
    assert served == TRAFFIC


def _cards(page: Any) -> dict[int, dict[str, str]]:
    cards: dict[int, dict[str, str]] = {}
    for card in page.locator("section.cmp-card").all():
        member = int(card.get_attribute("data-member"))
        cards[member] = {
            dd.get_attribute("data-kpi"): _text(dd)
            for dd in card.locator("dd[data-kpi]").all()
        }
    return cards


def _window(page: Any) -> tuple[datetime, datetime]:
    times = page.locator(".cmp-window time")
    return (
        parse_datetime(times.nth(0).get_attribute("datetime")),
        parse_datetime(times.nth(1).get_attribute("datetime")),
    )


def test_group_comparison_numbers_equal_sql_and_fit_a_phone(
    admin_page, browser, signed_in_state, traffic, django_db_blocker, request
):
    page = admin_page
    page.goto(f"{traffic.url}/groups/{DEMO_GROUP}/")
    page.get_by_role("link", name="Comparison").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Comparison")

    since, until = _window(page)
    with django_db_blocker.unblock():
        raw = raw_member_numbers(traffic.group_id, since, until, schema=traffic.slug)
        exact = _percentiles(traffic, "member_id", since, until)
    cards = _cards(page)
    assert set(raw) == set(cards)
    assert int(_text(page.locator("[data-total-requests]"))) == TRAFFIC
    assert sum(r["requests"] for r in raw.values()) == TRAFFIC
    for member_id, sql in raw.items():
        card = cards[member_id]
        assert int(card["requests"]) == sql["requests"]
        assert int(card["errors"]) == sql["errors"]
        assert int(card["labelled"]) == sql["labelled"]
        assert int(card["correct"]) == sql["correct"]
        assert card["error_rate"] == rate(
            stats.wilson_interval(sql["errors"], sql["requests"]).as_dict()
        )
        assert card["primary"] == metric_text(
            stats.wilson_interval(sql["correct"], sql["labelled"]).as_dict(),
            "accuracy",
        )
        assert card["mean_ms"] == ms(sql["mean"])
        _within_a_bucket(card["p95_ms"], exact[member_id]["p95"])
        _within_a_bucket(card["p50_ms"], exact[member_id]["p50"])
    assert re.search(
        r"\d+ more labelled requests|promote|keep",
        _text(page.locator("[data-verdict]").first),
        re.I,
    )
    screenshot(page, request.node.name)

    # The same page on a 375 px wide phone: nothing sticks out sideways.
    phone = browser.new_context(
        viewport={"width": 375, "height": 812}, storage_state=signed_in_state
    )
    try:
        small = phone.new_page()
        small.goto(page.url)
        expect(small.locator("section.cmp-card").first).to_be_visible()
        screenshot(small, f"{request.node.name}-375px")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 375 + 1, f"the page is {width} px wide on a 375 px screen"
    finally:
        phone.close()


def test_promote_asks_first_then_swaps_roles_and_audits(
    admin_page, traffic, django_db_blocker, request
):
    with django_db_blocker.unblock():
        group = _group(traffic)
        before = members_of(group, schema=traffic.slug)
    page = admin_page
    page.goto(f"{traffic.url}/groups/{DEMO_GROUP}/comparison/")
    card = page.locator(f"section.cmp-card[data-member='{before['challenger'].pk}']")
    card.get_by_role("button", name="Promote…").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(rf"^Promote {DEMO_MODEL} v\d+\?$")
    )
    screenshot(page, f"{request.node.name}-confirm")
    with django_db_blocker.unblock(), schema_context(traffic.slug):
        from apps.groups.models import Membership

        # Asking changed nothing.
        assert Membership.objects.get(pk=before["champion"].pk).role == "champion"
    page.get_by_label("Reason (kept in the history and audit trail)").fill(
        "won in the browser"
    )
    page.get_by_role("button", name="Yes, promote").click()

    expect(page.locator(".flash.success")).to_contain_text("is the champion now.")
    expect(page.locator("table.cmp-history")).to_contain_text("won in the browser")
    with django_db_blocker.unblock():
        after = members_of(group, schema=traffic.slug)
        audit = audit_of(group.pk, schema=traffic.slug)
    assert after["champion"].pk == before["challenger"].pk
    assert after["challenger"].pk == before["champion"].pk
    assert audit[-1] == ("group.promote", traffic.admin_email)
