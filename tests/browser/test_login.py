"""Signing in through the real login form of a tenant host."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in

# One xdist worker runs them all: they share one server, tenant and browser.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(
    anonymous_page, live, request
):
    page = anonymous_page
    page.goto(f"{live.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Browser Org")

    sign_in(page, live, password="not-the-password")
    expect(page.locator(".flash.error")).to_have_text("Email or password is wrong.")
    screenshot(page, f"{request.node.name}-refused")

    sign_in(page, live)
    expect(page).to_have_url(f"{live.url}/")
    expect(page.locator(".topbar .who")).to_contain_text(live.admin_email)
    expect(page.locator("nav.sidebar")).to_be_visible()
    assert "sha512" not in page.content()

    # The audit trail names the API key by its prefix, never by the stored hash.
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Audit trail"
    ).click()
    page.get_by_label("Action").fill("api_key.create")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("main table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(f"accounts.apikey {live.predict_key[:8]}")
    assert "sha512" not in page.content()
