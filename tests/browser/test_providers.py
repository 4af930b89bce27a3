"""Settings → Providers in the browser: add an OpenAI-compatible provider that
points at a local fake server, test its connection, delete it after confirming."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect
from pytest_httpserver import HTTPServer

from tests.browser.conftest import screenshot

# One xdist worker runs them all: they share one server, tenant and browser.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

KEY = "sk-browser-0123456789wxyz"


@pytest.fixture
def fake_openai() -> Iterator[HTTPServer]:
    """GET /v1/models like OpenAI, on 127.0.0.1 (admitted by the SSRF allow-list)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/v1/models", method="GET").respond_with_json(
        {
            "object": "list",
            "data": [
                {"id": "gpt-fake", "object": "model", "created": 1, "owned_by": "me"}
            ],
        }
    )
    server.start()
    yield server
    server.clear()
    server.stop()


def test_add_test_and_delete_a_provider(
    admin_page, live, fake_openai, django_db_blocker, request
):
    from apps.audit.models import AuditEvent
    from apps.providers.models import ProviderConfig

    page = admin_page
    page.goto(f"{live.url}/")
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Providers"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Providers")
    page.get_by_role("link", name="Add provider").click()

    form = page.locator("form.provider-form")
    form.locator("input[name=name]").fill("fake-openai")
    expect(form.locator("select[name=kind]")).to_have_value("openai")
    form.locator("input[name=base_url]").fill(fake_openai.url_for("/v1"))
    form.locator("input[name=api_key]").fill(KEY)
    form.locator("input[name=default_model]").fill("gpt-fake")
    screenshot(page, f"{request.node.name}-form")
    form.get_by_role("button", name="Save").click()

    expect(page.locator(".flash.success")).to_have_text(
        "Provider 'fake-openai' is saved."
    )
    row = page.locator("table.providers tbody tr", has_text="fake-openai")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("••••wxyz")
    assert KEY not in page.content()  # the key is never rendered
    with django_db_blocker.unblock(), schema_context(live.slug):
        provider = ProviderConfig.objects.get(name="fake-openai")
    health = row.locator(f"#health-{provider.pk}")
    expect(health).to_contain_text("not tested")

    row.get_by_role("button", name="Test connection").click()
    expect(health.locator(".health.ok")).to_have_text("ok")
    expect(health).to_contain_text(" ms")
    calls = [r for r, _ in fake_openai.log if r.path == "/v1/models"]
    assert calls and calls[-1].headers["Authorization"] == f"Bearer {KEY}"
    screenshot(page, f"{request.node.name}-tested")

    row.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete fake-openai?")
    with django_db_blocker.unblock(), schema_context(live.slug):
        assert ProviderConfig.objects.filter(pk=provider.pk).exists()  # not yet
    page.get_by_role("button", name="Delete fake-openai").click()

    expect(page.locator(".flash.success")).to_have_text(
        "Provider 'fake-openai' is deleted."
    )
    expect(
        page.locator("table.providers tbody tr", has_text="fake-openai")
    ).to_have_count(0)
    with django_db_blocker.unblock(), schema_context(live.slug):
        assert not ProviderConfig.objects.filter(pk=provider.pk).exists()
        actions = list(
            AuditEvent.objects.filter(
                object_type="providers.providerconfig", object_id=str(provider.pk)
            )
            .order_by("id")
            .values_list("action", "actor")
        )
    assert [a for a, _ in actions] == ["provider.create", "provider.delete"]
    assert {actor for _, actor in actions} == {live.admin_email}
