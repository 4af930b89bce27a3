"""The inference browser: filter a group's log to explained, labelled rows, open
one, and read its server-rendered SHAP waterfall and table."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from apps.tenants.demo import DEMO_GROUP
from tests.browser.conftest import screenshot

# One xdist worker runs them all: they share one server, tenant and browser.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _sql(live: Any, query: str, params: list[Any] | None = None) -> list[tuple]:
    """Rows of a query over the group's inference table ({table})."""
    with schema_context(live.slug), connection.cursor() as cursor:
        cursor.execute(
            query.format(table=f"inference_log_g{int(live.group_id)}"), params
        )
        return cursor.fetchall()


def test_filter_then_open_an_inference_with_its_shap_chart(
    admin_page, traffic, django_db_blocker, request
):
    page = admin_page
    page.goto(f"{traffic.url}/")
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Inference"
    ).click()
    # One group only: the index goes straight to its log.
    expect(page).to_have_url(f"{traffic.url}/inference/{DEMO_GROUP}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Breast cancer screening"
    )
    everything = page.locator("table.inference-rows tbody tr")
    expect(everything.first).to_be_visible()

    filters = page.get_by_role("search", name="Filter inferences")
    filters.get_by_label("SHAP").select_option("true")
    filters.get_by_label("Feedback").select_option("true")
    filters.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]has_feedback=true"))
    expect(page).to_have_url(re.compile(r"[?&]has_explanation=true"))
    with django_db_blocker.unblock():
        expected = [
            row[0]
            for row in _sql(
                traffic,
                "SELECT request_id::text FROM {table} WHERE explanation IS NOT NULL "
                "AND feedback IS NOT NULL ORDER BY ts DESC",
            )
        ]
    assert expected, "no explained, labelled inference to find"
    rows = page.locator("table.inference-rows tbody tr")
    expect(rows).to_have_count(len(expected))
    shown = [
        (row.locator("td").nth(1).locator("code").text_content() or "").strip()
        for row in rows.all()
    ]
    assert shown == expected  # newest first, exactly the matching rows
    expect(rows.locator(".inference-shap")).to_have_count(len(expected))
    screenshot(page, f"{request.node.name}-filtered")

    chosen = shown[0]
    rows.first.get_by_role("link", name=chosen).click()
    expect(page.locator("h1 code.inference-id")).to_have_text(chosen)

    with django_db_blocker.unblock():
        [(stored,)] = _sql(
            traffic, "SELECT explanation FROM {table} WHERE request_id = %s", [chosen]
        )
    stored = json.loads(stored) if isinstance(stored, str) else stored

    chart = page.locator("svg.inference-waterfall")
    expect(chart).to_be_visible()
    bars = chart.locator("g.inference-bar rect")
    assert bars.count() >= 2
    for bar in bars.all():
        assert float(bar.get_attribute("width")) > 0
    values = [float(bar.get_attribute("data-value")) for bar in bars.all()]
    base = float(chart.get_attribute("data-base-value"))
    output = float(chart.get_attribute("data-output"))
    assert base == pytest.approx(float(stored["base_value"]))
    # The bars (the top features and the rest together) add up to the stored values.
    assert sum(values) == pytest.approx(sum(stored["values"].values()), abs=1e-9)
    assert output == pytest.approx(base + sum(values), abs=1e-9)
    table = page.locator("table.inference-shap-table tbody tr")
    expect(table).to_have_count(len(values) + 2)  # base value, bars, output
    expect(table.first).to_contain_text("base value")
    expect(table.last).to_contain_text("output")
    expect(page.locator(".inference-explain .flash.warning")).to_have_count(0)
