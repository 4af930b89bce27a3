"""Every main page on a 375 px wide phone: nothing sticks out sideways, neither the
page nor its main column (wide tables scroll inside their own box)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.tenants.demo import DEMO_GROUP
from tests.browser.conftest import screenshot

# One xdist worker runs them all: they share one server, tenant and browser.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PAGES = {
    "dashboard": "/",
    "models": "/models/",
    "model": "/models/breast-cancer-classifier/",
    "groups": "/groups/",
    "group": f"/groups/{DEMO_GROUP}/",
    "inference": f"/inference/{DEMO_GROUP}/",
    "jobs": "/jobs/",
    "wizard": "/jobs/new/",
    "providers": "/settings/providers/",
    "api-keys": "/settings/api-keys/",
    "audit": "/settings/audit/",
    "notifications": "/notifications/",
}

OVERFLOW = """() => {
  const main = document.querySelector('main');
  return {
    page: document.documentElement.scrollWidth,
    main: main ? main.scrollWidth - main.clientWidth : 0,
  };
}"""


def test_main_pages_fit_a_375px_screen(
    browser: Any, signed_in_state: dict[str, Any], traffic: Any, request: Any
) -> None:
    context = browser.new_context(
        viewport={"width": 375, "height": 812}, storage_state=signed_in_state
    )
    context.set_default_timeout(15_000)
    wide = {}
    try:
        page = context.new_page()
        for name, path in PAGES.items():
            response = page.goto(f"{traffic.url}{path}")
            assert response is not None and response.status == 200, (name, path)
            page.wait_for_load_state("networkidle")
            screenshot(page, f"{request.node.name}-{name}")
            sizes = page.evaluate(OVERFLOW)
            if sizes["page"] > 375 + 1 or sizes["main"] > 1:
                wide[name] = sizes
    finally:
        context.close()
    assert not wide, f"wider than a 375 px screen: {wide}"
