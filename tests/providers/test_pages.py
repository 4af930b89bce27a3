"""Settings → Providers pages and the admin: forms follow the kind, the key is never
rendered, service refusals become form errors, viewers only look."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template.defaultfilters import floatformat
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.providers.models import ProviderConfig, ProviderUsage
from tests.providers.helpers import (
    CANARY,
    UNUSED_URL,
    audit_actions,
    closed_port,
    fake_openai_models,
    provider_in,
    stored,
)

LIST = "/settings/providers/"
NEW = "/settings/providers/new/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def admin(tenant_a, make_user):  # type: ignore[no-untyped-def]
    return make_user(tenant_a, "admin", email="boss@alpha.test")


@pytest.fixture
def browser(tenant_a, admin, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant_a, admin)


def form_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "openai-main",
        "kind": "openai",
        "base_url": UNUSED_URL,
        "api_key": CANARY,
        "default_model": "gpt-4o-mini",
        "enabled": "on",
        "timeout_seconds": "30",
        "max_retries": "2",
        "price_per_1k_input": "0",
        "price_per_1k_output": "0",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_list_shows_providers_health_and_usage_without_the_key(tenant_a, browser):
    ok = provider_in(tenant_a, name="openai-main", default_model="gpt-4o-mini")
    provider_in(tenant_a, name="scorer", kind="custom_http", api_key="")
    with schema_context("alpha"):
        ProviderConfig.objects.filter(pk=ok.pk).update(
            last_health_status="ok",
            last_health_latency_ms=123.4,
            last_health_at=timezone.now(),
        )
        ProviderUsage.objects.create(
            provider=ok,
            day=timezone.localdate(),
            requests=7,
            errors=2,
            tokens_in=1500,
            tokens_out=320,
            cost=Decimal("1.5"),
        )

    response = browser.get(LIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert "openai-main" in page and "scorer" in page
    assert "••••abcd" in page
    assert "ok</span> · 123 ms" in page
    assert "not tested" in page
    assert '<td class="num">7</td>' in page and '<td class="num">2</td>' in page
    assert "1500 / 320" in page and "1.50" in page
    assert "Test connection" in page and 'name="ids"' in page
    assert "sk-canary-" not in page


def test_list_filters_by_search_kind_and_health(tenant_a, browser):
    provider_in(tenant_a, name="openai-main")
    provider_in(tenant_a, name="scorer", kind="custom_http", api_key="")

    by_kind = browser.get(LIST, {"kind": "custom_http"}).content.decode()
    by_name = browser.get(LIST, {"search": "MAIN"}).content.decode()
    none = browser.get(LIST, {"health": "ok"}).content.decode()

    assert "scorer" in by_kind and "openai-main" not in by_kind
    assert "openai-main" in by_name and "scorer" not in by_name
    assert "No provider matches these filters." in none
    assert "Show all 2" in none


def test_empty_state_is_honest(browser, tenant_a, make_user, page_client):
    assert "No providers yet." in browser.get(LIST).content.decode()
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))
    assert "An admin of this organisation can add one." in (
        viewer.get(LIST).content.decode()
    )


def test_create_through_the_form(tenant_a, browser):
    response = browser.post(NEW, form_data())

    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == LIST
    with schema_context("alpha"):
        provider = ProviderConfig.objects.get(name="openai-main")
        assert provider.api_key == CANARY
        assert (provider.kind, provider.base_url) == ("openai", UNUSED_URL)
    assert [e.action for e in audit_actions(tenant_a, provider.pk)] == [
        "provider.create"
    ]
    assert "is saved" in browser.get(LIST).content.decode()


def test_create_form_errors_name_the_field_and_keep_nothing(browser):
    response = browser.post(
        NEW, form_data(timeout_seconds="0", base_url="http://169.254.169.254/")
    )

    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors["timeout_seconds"] == [
        "Must be more than 0 and at most 600 seconds."
    ]
    assert form.errors["base_url"] == [
        "URL refused: 169.254.169.254 is not a public address."
    ]
    assert "sk-canary-" not in response.content.decode()  # never re-rendered
    with schema_context("alpha"):
        assert not ProviderConfig.objects.exists()


def test_retries_above_ten_and_negative_prices_are_refused_on_the_input(browser):
    response = browser.post(NEW, form_data(max_retries="11", price_per_1k_input="-1"))

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "max_retries": ["Ensure this value is less than or equal to 10."],
        "price_per_1k_input": ["Ensure this value is greater than or equal to 0."],
    }


def test_service_refusal_becomes_a_form_error_not_a_500(browser):
    # Passes the form's offline checks; the service's DNS check refuses it.
    response = browser.post(NEW, form_data(base_url="https://no-such-host.invalid/v1"))

    assert response.status_code == 200
    assert "does not resolve" in " ".join(response.context["form"].errors["base_url"])


def test_a_kind_that_needs_a_key_says_so(browser):
    response = browser.post(NEW, form_data(api_key=""))

    assert response.context["form"].errors["api_key"] == ["openai needs an API key."]


def test_edit_with_blank_key_keeps_it(tenant_a, browser):
    provider = provider_in(tenant_a, name="one")
    url = f"{LIST}{provider.pk}/"

    page = browser.get(url).content.decode()
    assert 'placeholder="••••abcd (leave empty to keep)"' in page
    assert "sk-canary-" not in page
    response = browser.post(url, form_data(name="renamed", api_key=""))

    assert response.status_code == 302, response.content.decode()
    saved = stored(tenant_a, provider.pk)
    assert (saved.name, saved.api_key) == ("renamed", CANARY)
    assert [e.action for e in audit_actions(tenant_a, provider.pk)] == [
        "provider.create",
        "provider.update",
    ]


def test_edit_can_replace_or_remove_the_key(tenant_a, browser):
    provider = provider_in(
        tenant_a, kind="custom_http", base_url="http://127.0.0.1:9/predict"
    )
    url = f"{LIST}{provider.pk}/"
    data = form_data(kind="custom_http", base_url="http://127.0.0.1:9/predict")

    browser.post(url, {**data, "api_key": "sk-canary-replaced-9999"})
    assert stored(tenant_a, provider.pk).api_key == "sk-canary-replaced-9999"
    browser.post(url, {**data, "api_key": "", "clear_api_key": "on"})
    assert stored(tenant_a, provider.pk).api_key == ""


def test_htmx_kind_switch_shows_the_inputs_of_that_kind(browser):
    openai = browser.get(NEW, {"kind": "openai", "name": "kept"}, **HTMX)
    anthropic = browser.get(NEW, {"kind": "anthropic"}, **HTMX).content.decode()
    custom = browser.get(NEW, {"kind": "custom_http"}, **HTMX).content.decode()

    openai_html = openai.content.decode()
    assert openai_html.startswith('<div id="provider-fields">')  # the partial only
    assert "<html" not in openai_html
    assert 'name="organization"' in openai_html and 'name="project"' in openai_html
    assert 'value="kept"' in openai_html
    assert 'placeholder="https://api.openai.com/v1"' in openai_html
    assert 'name="organization"' not in anthropic
    assert 'name="request_template"' not in anthropic
    assert 'placeholder="https://api.anthropic.com"' in anthropic
    for name in ("request_template", "response_path", "auth_header", "health_url"):
        assert f'name="{name}"' in custom
    assert 'name="organization"' not in custom
    assert "Optional for this kind." in custom
    # The re-render never carries the key through a URL.
    assert 'hx-params="not api_key,clear_api_key,csrfmiddlewaretoken"' in custom


def test_htmx_kind_switch_on_the_edit_page_keeps_the_key_hint(tenant_a, browser):
    provider = provider_in(tenant_a)

    html = browser.get(
        f"{LIST}{provider.pk}/", {"kind": "custom_http"}, **HTMX
    ).content.decode()

    assert 'name="request_template"' in html and 'name="organization"' not in html
    assert 'placeholder="••••abcd (leave empty to keep)"' in html
    assert "sk-canary-" not in html


def test_custom_http_inputs_go_into_settings(tenant_a, browser):
    response = browser.post(
        NEW,
        form_data(
            name="scorer",
            kind="custom_http",
            base_url="http://127.0.0.1:9/predict",
            api_key="",
            request_template='{"instances": "{{inputs}}"}',
            response_path="predictions.0",
            auth_header="X-Api-Key",
            health_url="http://127.0.0.1:9/health",
        ),
    )

    assert response.status_code == 302, response.context["form"].errors
    with schema_context("alpha"):
        provider = ProviderConfig.objects.get(name="scorer")
    assert provider.settings == {
        "request_template": {"instances": "{{inputs}}"},
        "response_path": "predictions.0",
        "auth_header": "X-Api-Key",
        "health_url": "http://127.0.0.1:9/health",
    }
    assert provider.api_key == ""
    edit = browser.get(f"{LIST}{provider.pk}/").content.decode()
    assert "predictions.0" in edit and "X-Api-Key" in edit


def test_custom_http_connector_errors_land_on_their_inputs(browser):
    response = browser.post(
        NEW,
        form_data(
            kind="custom_http",
            base_url="http://127.0.0.1:9/predict",
            request_template='{"no": "placeholder"}',
            response_path="a..b",
        ),
    )

    errors = response.context["form"].errors
    assert set(errors) == {"request_template", "response_path"}


def test_test_connection_partial_shows_the_mapped_error(tenant_a, browser):
    provider = provider_in(tenant_a, base_url=f"http://127.0.0.1:{closed_port()}/v1")

    response = browser.post(f"{LIST}{provider.pk}/test/", **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith(f'<span class="health-cell" id="health-{provider.pk}">')
    assert '<span class="health error">unavailable</span>' in html
    assert "The provider could not be reached or is failing." in html
    assert "sk-canary-" not in html


def test_test_connection_partial_shows_ok_and_latency(tenant_a, browser, httpserver):
    provider = provider_in(tenant_a, base_url=fake_openai_models(httpserver, ["m"]))

    html = browser.post(f"{LIST}{provider.pk}/test/", **HTMX).content.decode()

    latency = stored(tenant_a, provider.pk).last_health_latency_ms
    # Rounded as the template rounds (half up), not as Python's format() does.
    assert f'<span class="health ok">ok</span> · {floatformat(latency, 0)} ms' in html


def test_test_connection_without_htmx_redirects_with_a_message(tenant_a, browser):
    provider = provider_in(tenant_a, base_url=f"http://127.0.0.1:{closed_port()}/v1")

    response = browser.post(f"{LIST}{provider.pk}/test/", follow=True)

    assert response.redirect_chain == [(LIST, 302)]
    assert f"{provider.name}: unavailable" in response.content.decode()


def test_delete_confirms_then_deletes(tenant_a, browser):
    provider = provider_in(tenant_a, name="doomed")
    url = f"{LIST}{provider.pk}/delete/"

    confirm = browser.get(url).content.decode()
    assert "Delete doomed?" in confirm and 'type="submit"' in confirm
    response = browser.post(url)

    assert response.status_code == 302
    with schema_context("alpha"):
        assert not ProviderConfig.objects.filter(pk=provider.pk).exists()


def test_delete_of_a_provider_in_use_is_refused(tenant_a, browser):
    from apps.registry.services import model_import

    provider = provider_in(tenant_a, name="busy")
    with schema_context("alpha"):
        model_import(
            provider=provider,
            external_id="gpt-4o-mini",
            model_name="churn",
            actor="test",
        )
    url = f"{LIST}{provider.pk}/delete/"

    confirm = browser.get(url).content.decode()
    refused = browser.post(url)

    assert "busy is in use and cannot be deleted." in confirm
    assert "<li>model version churn v1</li>" in confirm
    assert 'class="danger"' not in confirm
    assert refused.status_code == 409
    assert "is in use by: model version churn v1" in refused.content.decode()
    assert stored(tenant_a, provider.pk).name == "busy"


def test_bulk_actions_report_each_item(tenant_a, browser):
    one = provider_in(tenant_a, name="one")
    two = provider_in(tenant_a, name="two")

    response = browser.post(
        f"{LIST}bulk/",
        {"ids": [str(one.pk), str(two.pk)], "action": "disable"},
        follow=True,
    )

    page = response.content.decode()
    assert "one: ok" in page and "two: ok" in page
    assert [stored(tenant_a, p.pk).enabled for p in (one, two)] == [False, False]
    refused = browser.post(f"{LIST}bulk/", {"action": "delete"}, follow=True)
    assert "Nothing was done." in refused.content.decode()
    assert stored(tenant_a, one.pk).name == "one"


def test_viewer_sees_no_actions_and_cannot_post(tenant_a, make_user, page_client):
    provider = provider_in(tenant_a, name="visible")
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))

    page = viewer.get(LIST).content.decode()

    assert "visible" in page
    for control in ("Test connection", "Add provider", 'name="ids"', "/delete/"):
        assert control not in page
    assert "sk-canary-" not in page
    assert viewer.get(NEW).status_code == 403
    assert viewer.get(f"{LIST}{provider.pk}/").status_code == 403
    for url, data in (
        (NEW, form_data(name="sneaky")),
        (f"{LIST}{provider.pk}/", form_data(name="renamed")),
        (f"{LIST}{provider.pk}/test/", {}),
        (f"{LIST}{provider.pk}/delete/", {}),
        (f"{LIST}bulk/", {"ids": [str(provider.pk)], "action": "disable"}),
    ):
        assert viewer.post(url, data).status_code == 403, url
    saved = stored(tenant_a, provider.pk)
    assert (saved.name, saved.enabled) == ("visible", True)


def test_another_tenants_provider_page_is_404(tenant_b, browser):
    theirs = provider_in(tenant_b, name="theirs")

    assert browser.get(f"{LIST}{theirs.pk}/").status_code == 404
    assert browser.post(f"{LIST}{theirs.pk}/test/").status_code == 404
    assert "theirs" not in browser.get(LIST).content.decode()


def test_admin_never_renders_the_key_and_saving_keeps_it(tenant_a, browser):
    provider = provider_in(tenant_a, name="adm")
    url = f"/admin/providers/providerconfig/{provider.pk}/change/"

    page = browser.get(url)
    changelist = browser.get("/admin/providers/providerconfig/").content.decode()

    html = page.content.decode()
    assert page.status_code == 200
    assert "sk-canary-" not in html and "sk-canary-" not in changelist
    assert 'name="api_key"' not in html
    assert "••••abcd" in html and "••••abcd" in changelist

    form = page.context["adminform"].form
    data = {
        name: form[name].value() if form[name].value() is not None else ""
        for name in form.fields
    }
    data.update({"default_model": "gpt-4.1", "enabled": "on", "settings": "{}"})
    saved = browser.post(url, data)

    assert saved.status_code == 302, saved.content.decode()[:2000]
    after = stored(tenant_a, provider.pk)
    assert (after.default_model, after.api_key) == ("gpt-4.1", CANARY)
    assert [e.action for e in audit_actions(tenant_a, provider.pk)][-1] == (
        "provider.update"
    )


def test_admin_add_goes_through_the_service(tenant_a, browser):
    response = browser.post(
        "/admin/providers/providerconfig/add/",
        {
            "name": "from-admin",
            "kind": "custom_http",
            "base_url": "http://127.0.0.1:9/predict",
            "settings": "{}",
            "timeout_seconds": "30",
            "max_retries": "2",
            "enabled": "on",
            "price_per_1k_input": "0",
            "price_per_1k_output": "0",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    with schema_context("alpha"):
        provider = ProviderConfig.objects.get(name="from-admin")
    assert provider.created_by == "boss@alpha.test"
    assert [e.action for e in audit_actions(tenant_a, provider.pk)] == [
        "provider.create"
    ]
    refused = browser.post(
        "/admin/providers/providerconfig/add/",
        {"name": "meta", "kind": "openai", "base_url": "http://169.254.169.254/"},
    )
    assert refused.status_code == 200
    assert "base_url" in refused.context["adminform"].form.errors


def test_admin_usage_is_read_only(tenant_a, browser):
    provider = provider_in(tenant_a)
    with schema_context("alpha"):
        usage = ProviderUsage.objects.create(
            provider=provider, day=timezone.localdate()
        )

    assert browser.get("/admin/providers/providerusage/").status_code == 200
    assert browser.get("/admin/providers/providerusage/add/").status_code == 403
    assert (
        browser.post(
            f"/admin/providers/providerusage/{usage.pk}/change/", {"requests": 5}
        ).status_code
        == 403
    )
