"""/api/v1/providers/: CRUD through the services, a write-only key, validation that
names the field, roles, tenant isolation, health tests, catalogue, bulk and audit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.providers import services
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

URL = "/api/v1/providers/"
EMPTY_USAGE = {
    "requests": 0,
    "errors": 0,
    "avg_latency_ms": None,
    "tokens_in": 0,
    "tokens_out": 0,
    "cost": "0.000000",
}
VOLATILE = {"id", "created_at", "updated_at"}


@pytest.fixture
def admin(tenant_a, make_user):  # type: ignore[no-untyped-def]
    return make_user(tenant_a, "admin", email="boss@alpha.test")


@pytest.fixture
def client(tenant_a, admin, api_client):  # type: ignore[no-untyped-def]
    return api_client(tenant_a, user=admin)


def body_of(response) -> dict:  # type: ignore[no-untyped-def]
    return {k: v for k, v in response.json().items() if k not in VOLATILE}


def test_create_returns_the_provider_without_its_key(tenant_a, client):
    response = client.post(
        URL,
        {
            "name": "openai-main",
            "kind": "openai",
            "base_url": UNUSED_URL,
            "api_key": CANARY,
            "default_model": "gpt-4o-mini",
            "timeout_seconds": 20,
            "max_retries": 3,
            "price_per_1k_input": "0.15",
            "price_per_1k_output": "0.6",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert body_of(response) == {
        "name": "openai-main",
        "kind": "openai",
        "base_url": UNUSED_URL,
        "organization": "",
        "project": "",
        "default_model": "gpt-4o-mini",
        "settings": {},
        "timeout_seconds": 20.0,
        "max_retries": 3,
        "rate_limit_per_minute": None,
        "enabled": True,
        "price_per_1k_input": "0.150000",
        "price_per_1k_output": "0.600000",
        "monthly_token_budget": None,
        "monthly_cost_budget": None,
        "api_key_masked": "••••abcd",
        "last_health_status": "unknown",
        "last_health_latency_ms": None,
        "last_health_error": "",
        "last_health_error_code": "",
        "last_health_at": None,
        "consecutive_failures": 0,
        "circuit_open_until": None,
        "usage": EMPTY_USAGE,
        "created_by": "boss@alpha.test",
    }
    assert CANARY.encode() not in response.content
    assert "api_key" not in response.json()
    saved = stored(tenant_a, response.json()["id"])
    assert saved.api_key == CANARY
    with schema_context("alpha"):
        column = ProviderConfig.objects.filter(pk=saved.pk).values_list(
            "api_key", flat=True
        )
        raw = connection.cursor()
        raw.execute(
            "SELECT api_key FROM providers_providerconfig WHERE id = %s", [saved.pk]
        )
        at_rest = raw.fetchone()[0]
    assert list(column) == [CANARY]  # the ORM decrypts...
    assert CANARY not in at_rest  # ...the table holds ciphertext only


def test_create_without_base_url_uses_the_kinds_default(client, monkeypatch):
    checked: list[str] = []
    # No DNS here: record the URL the service checks instead of resolving it.
    monkeypatch.setattr(services, "check_url", lambda url, **kw: checked.append(url))

    response = client.post(
        URL,
        {"name": "anthropic", "kind": "anthropic", "api_key": CANARY},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["base_url"] == "https://api.anthropic.com"
    assert checked == ["https://api.anthropic.com"]


def test_list_retrieve_update_delete_never_show_the_key(tenant_a, client):
    provider = provider_in(tenant_a, name="one", default_model="gpt-4o")
    detail = f"{URL}{provider.pk}/"

    listed = client.get(URL)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["results"]] == ["one"]
    assert listed.json()["count"] == 1
    retrieved = client.get(detail)
    assert retrieved.status_code == 200
    assert retrieved.json()["api_key_masked"] == "••••abcd"
    patched = client.patch(detail, {"default_model": "gpt-4.1"}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["default_model"] == "gpt-4.1"
    put = client.put(
        detail,
        {"name": "one", "kind": "openai", "base_url": UNUSED_URL, "max_retries": 1},
        format="json",
    )
    assert put.status_code == 200, put.content
    assert put.json()["max_retries"] == 1
    for response in (listed, retrieved, patched, put):
        assert b"sk-canary-" not in response.content
        assert "api_key" not in str(response.json()).replace("api_key_masked", "")

    deleted = client.delete(detail)
    assert deleted.status_code == 204
    assert client.get(detail).status_code == 404
    with schema_context("alpha"):
        assert not ProviderConfig.objects.filter(pk=provider.pk).exists()


def test_update_without_key_keeps_it_and_empty_key_clears_it(tenant_a, client):
    provider = provider_in(tenant_a, kind="custom_http", base_url=UNUSED_URL)
    detail = f"{URL}{provider.pk}/"

    client.patch(detail, {"timeout_seconds": 5}, format="json")
    assert stored(tenant_a, provider.pk).api_key == CANARY

    cleared = client.patch(detail, {"api_key": ""}, format="json")
    assert cleared.status_code == 200, cleared.content
    assert cleared.json()["api_key_masked"] == ""
    assert stored(tenant_a, provider.pk).api_key == ""


def test_a_kind_that_needs_a_key_refuses_to_lose_it(tenant_a, client):
    provider = provider_in(tenant_a)

    response = client.patch(f"{URL}{provider.pk}/", {"api_key": ""}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "api_key": ["openai needs an API key."]
    }
    assert stored(tenant_a, provider.pk).api_key == CANARY


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "sagemaker"}, "kind"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 601}, "timeout_seconds"),
        ({"max_retries": 11}, "max_retries"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "http://169.254.169.254/"}, "base_url"),
        ({"base_url": "http://10.0.0.1/v1"}, "base_url"),
        ({"settings": ["not", "an", "object"]}, "settings"),
        ({"price_per_1k_input": "-1"}, "price_per_1k_input"),
        ({"api_key": ""}, "api_key"),
    ],
)
def test_bad_input_is_400_naming_the_field(tenant_a, client, body, field):
    payload = {"name": "p", "kind": "openai", "base_url": UNUSED_URL}
    payload["api_key"] = CANARY
    payload.update(body)

    response = client.post(URL, payload, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    with schema_context("alpha"):
        assert ProviderConfig.objects.count() == 0


def test_metadata_address_is_refused_with_the_reason(client):
    response = client.post(
        URL,
        {"name": "p", "kind": "openai", "base_url": "http://169.254.169.254/"},
        format="json",
    )

    assert response.json()["error"]["fields"]["base_url"] == [
        "'http://169.254.169.254/': 169.254.169.254 is not a public address."
    ]


def test_a_name_that_does_not_resolve_is_refused_by_the_service(client):
    response = client.post(
        URL,
        {
            "name": "p",
            "kind": "openai",
            "base_url": "https://no-such-host.invalid/v1",
            "api_key": CANARY,
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsafe_url"
    assert list(response.json()["error"]["fields"]) == ["base_url"]


def test_custom_http_rules_come_from_its_connector(client):
    response = client.post(
        URL,
        {
            "name": "scorer",
            "kind": "custom_http",
            "base_url": UNUSED_URL,
            "settings": {"request_template": {"x": 1}, "response_path": "a..b"},
        },
        format="json",
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"settings.request_template", "settings.response_path"}


def test_duplicate_name_is_refused(tenant_a, client):
    provider_in(tenant_a, name="dup")

    response = client.post(
        URL,
        {"name": "dup", "kind": "openai", "base_url": UNUSED_URL, "api_key": CANARY},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["name"]


def test_unknown_id_is_404_in_the_envelope(client):
    for response in (
        client.get(f"{URL}999999/"),
        client.patch(f"{URL}999999/", {"enabled": False}, format="json"),
        client.post(f"{URL}999999/test/"),
        client.get(f"{URL}999999/models/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_another_tenants_provider_is_invisible(tenant_a, tenant_b, client):
    mine = provider_in(tenant_a, name="mine")
    theirs = provider_in(tenant_b, name="theirs")
    if theirs.pk == mine.pk:  # ids count per schema: the same number is not theirs
        theirs = provider_in(tenant_b, name="theirs-2")

    assert [p["id"] for p in client.get(URL).json()["results"]] == [mine.pk]
    for response in (
        client.get(f"{URL}{theirs.pk}/"),
        client.patch(f"{URL}{theirs.pk}/", {"enabled": False}, format="json"),
        client.delete(f"{URL}{theirs.pk}/"),
        client.post(f"{URL}{theirs.pk}/test/"),
    ):
        assert response.status_code == 404
    assert stored(tenant_b, theirs.pk).enabled is True


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_viewers_and_editors_read_but_do_not_write(
    tenant_a, make_user, api_client, role
):
    provider = provider_in(tenant_a)
    client = api_client(tenant_a, user=make_user(tenant_a, role))
    detail = f"{URL}{provider.pk}/"

    assert client.get(URL).status_code == 200
    assert client.get(detail).status_code == 200
    for response in (
        client.post(URL, {"name": "x", "kind": "openai"}, format="json"),
        client.patch(detail, {"enabled": False}, format="json"),
        client.delete(detail),
        client.post(f"{detail}test/"),
        client.post(f"{URL}bulk/", {"ids": [provider.pk], "action": "disable"}),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["message"] == (
            f"This needs the admin role; you are {role}."
        )
    assert stored(tenant_a, provider.pk).enabled is True


def test_predict_keys_are_refused_and_manage_keys_allowed(
    tenant_a, make_key, api_client
):
    provider = provider_in(tenant_a)
    _, predict = make_key(tenant_a, scope="predict")
    _, manage = make_key(tenant_a, scope="manage")
    refused = api_client(tenant_a, key=predict)

    assert refused.get(URL).status_code == 403
    assert refused.get(f"{URL}{provider.pk}/").status_code == 403
    assert refused.delete(f"{URL}{provider.pk}/").status_code == 403

    allowed = api_client(tenant_a, key=manage)
    assert allowed.get(URL).status_code == 200
    created = allowed.post(
        URL,
        {
            "name": "by-key",
            "kind": "openai",
            "base_url": UNUSED_URL,
            "api_key": "k" * 9,
        },
        format="json",
    )
    assert created.status_code == 201
    assert allowed.delete(f"{URL}{provider.pk}/").status_code == 204


def test_filters(tenant_a, client):
    provider_in(tenant_a, name="OpenAI prod")
    provider_in(tenant_a, name="openai-dev", enabled=False)
    provider_in(tenant_a, name="scorer", kind="custom_http", api_key="")
    with schema_context("alpha"):
        ProviderConfig.objects.filter(name="scorer").update(last_health_status="ok")

    def names(query: str) -> list[str]:
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200, response.content
        return sorted(p["name"] for p in response.json()["results"])

    assert names("search=openai") == sorted(["OpenAI prod", "openai-dev"])
    assert names("kind=custom_http") == ["scorer"]
    assert names("health=ok") == ["scorer"]
    assert names("health=unknown&enabled=true") == ["OpenAI prod"]
    assert names("enabled=false") == ["openai-dev"]
    bad = client.get(f"{URL}?kind=sagemaker")
    assert bad.status_code == 400
    assert list(bad.json()["error"]["fields"]) == ["kind"]


def test_usage_summary_counts_this_month_in_one_query(tenant_a, client):
    first = provider_in(tenant_a, name="a")
    second = provider_in(tenant_a, name="b")
    today = timezone.localdate()
    with schema_context("alpha"):
        ProviderUsage.objects.create(
            provider=first,
            day=today,
            requests=4,
            errors=1,
            latency_ms_total=1000,
            tokens_in=300,
            tokens_out=50,
            cost=Decimal("0.25"),
        )
        ProviderUsage.objects.create(  # last month: not counted
            provider=first,
            day=today.replace(day=1) - timedelta(days=1),
            requests=99,
            errors=99,
            tokens_in=99,
            cost=Decimal("9"),
        )

    listed = client.get(URL).json()["results"]

    assert listed[0]["usage"] == {
        "requests": 4,
        "errors": 1,
        "avg_latency_ms": 250.0,
        "tokens_in": 300,
        "tokens_out": 50,
        "cost": "0.250000",
    }
    assert listed[1]["usage"] == EMPTY_USAGE
    assert client.get(f"{URL}{first.pk}/").json()["usage"]["requests"] == 4

    with CaptureQueriesContext(connection) as two:
        client.get(URL)
    for n in range(3):
        provider_in(tenant_a, name=f"more-{n}")
    with CaptureQueriesContext(connection) as five:
        client.get(URL)
    assert len(five) == len(two)
    assert second.pk in [p["id"] for p in listed]


def test_health_test_against_a_closed_port_is_data_not_an_error(tenant_a, client):
    port = closed_port()
    provider = provider_in(tenant_a, base_url=f"http://127.0.0.1:{port}/v1")

    response = client.post(f"{URL}{provider.pk}/test/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["last_health_status"] == "error"
    assert body["last_health_error_code"] == "unavailable"
    assert body["last_health_error"] == (
        "The provider could not be reached or is failing. (connection failed)"
    )
    assert body["last_health_at"] is not None
    assert b"sk-canary-" not in response.content
    assert stored(tenant_a, provider.pk).last_health_status == "error"


def test_health_test_against_a_live_server_is_ok(tenant_a, client, httpserver):
    base_url = fake_openai_models(httpserver, ["gpt-4o-mini"])
    provider = provider_in(tenant_a, base_url=base_url)

    response = client.post(f"{URL}{provider.pk}/test/")

    body = response.json()
    assert (body["last_health_status"], body["last_health_error_code"]) == ("ok", "")
    assert body["last_health_latency_ms"] > 0
    assert body["usage"]["requests"] == 1
    # The key went to the provider, and only there.
    assert httpserver.log[0][0].headers["Authorization"] == f"Bearer {CANARY}"
    assert b"sk-canary-" not in response.content


def test_models_lists_the_catalogue(tenant_a, client, httpserver):
    base_url = fake_openai_models(httpserver, ["gpt-4o-mini", "text-embedding-3"])
    provider = provider_in(tenant_a, base_url=base_url)

    response = client.get(f"{URL}{provider.pk}/models/")

    assert response.status_code == 200, response.content
    assert [(m["id"], m["capabilities"]) for m in response.json()] == [
        ("gpt-4o-mini", ["chat", "completion"]),
        ("text-embedding-3", ["embedding"]),
    ]
    assert response.json()[0]["owned_by"] == "me"
    assert b"sk-canary-" not in response.content


def test_models_failure_is_the_providers_error_in_the_envelope(tenant_a, client):
    provider = provider_in(tenant_a, base_url=f"http://127.0.0.1:{closed_port()}/v1")

    response = client.get(f"{URL}{provider.pk}/models/")

    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "unavailable",
        "message": "The provider could not be reached or is failing. "
        "(connection failed)",
    }
    assert b"sk-canary-" not in response.content


def test_models_of_a_provider_refusing_the_key_is_502_auth(
    tenant_a, client, httpserver
):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"error": {"message": f"Incorrect API key provided: {CANARY}"}}, status=401
    )
    provider = provider_in(tenant_a, base_url=httpserver.url_for("/v1"))

    response = client.get(f"{URL}{provider.pk}/models/")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "auth"
    assert b"sk-canary-" not in response.content


def test_validate_reports_without_saving(client):
    response = client.post(
        f"{URL}validate/",
        {"name": "p", "kind": "openai", "base_url": "http://127.0.0.1:9/openai"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == {
        "valid": False,
        "errors": {"api_key": ["openai needs an API key."]},
        "warnings": ["No default model: every call must name one."],
        "suggestions": ["OpenAI's API lives under /v1: try https://api.openai.com/v1"],
    }
    with schema_context("alpha"):
        assert ProviderConfig.objects.count() == 0


def test_validate_accepts_a_good_configuration_and_names_bad_fields(client):
    good = client.post(
        f"{URL}validate/",
        {
            "name": "p",
            "kind": "openai",
            "base_url": UNUSED_URL,
            "api_key": CANARY,
            "default_model": "gpt-4o-mini",
        },
        format="json",
    )
    bad = client.post(
        f"{URL}validate/",
        {"name": "p", "kind": "openai", "timeout_seconds": 0, "base_url": "ftp://x"},
        format="json",
    )
    unknown_kind = client.post(f"{URL}validate/", {"kind": "nope"}, format="json")

    assert good.json() == {
        "valid": True,
        "errors": {},
        "warnings": [],
        "suggestions": [],
    }
    assert b"sk-canary-" not in good.content
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert {"timeout_seconds", "base_url", "api_key"} <= set(bad.json()["errors"])
    assert set(unknown_kind.json()["errors"]) == {"name", "kind"}


def test_bulk_disable_enable_and_report(tenant_a, client):
    one = provider_in(tenant_a, name="one")
    two = provider_in(tenant_a, name="two")

    disabled = client.post(
        f"{URL}bulk/",
        {"ids": [two.pk, one.pk, 999999], "action": "disable"},
        format="json",
    )

    assert disabled.status_code == 200
    assert disabled.json() == {
        "action": "disable",
        "results": [
            {"id": one.pk, "name": "one", "status": "ok"},
            {"id": two.pk, "name": "two", "status": "ok"},
            {"id": 999999, "status": "not_found"},
        ],
    }
    assert [stored(tenant_a, p.pk).enabled for p in (one, two)] == [False, False]
    enabled = client.post(
        f"{URL}bulk/", {"ids": [one.pk], "action": "enable"}, format="json"
    )
    assert enabled.json()["results"] == [{"id": one.pk, "name": "one", "status": "ok"}]
    assert [stored(tenant_a, p.pk).enabled for p in (one, two)] == [True, False]


def test_bulk_test_and_delete(tenant_a, client):
    provider = provider_in(tenant_a, base_url=f"http://127.0.0.1:{closed_port()}/v1")

    tested = client.post(
        f"{URL}bulk/", {"ids": [provider.pk], "action": "test"}, format="json"
    )
    deleted = client.post(
        f"{URL}bulk/", {"ids": [provider.pk], "action": "delete"}, format="json"
    )

    assert tested.json()["results"][0]["status"] == "error"
    assert b"sk-canary-" not in tested.content
    assert deleted.json()["results"] == [
        {"id": provider.pk, "name": provider.name, "status": "deleted"}
    ]


@pytest.mark.parametrize(
    "body",
    [{"ids": [], "action": "enable"}, {"ids": [1], "action": "explode"}, {}],
)
def test_bulk_bad_input_is_400(client, body):
    response = client.post(f"{URL}bulk/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_delete_of_a_provider_in_use_is_409_with_dependents(tenant_a, client):
    from apps.registry.services import model_create, version_create

    provider = provider_in(tenant_a)
    with schema_context("alpha"):
        model = model_create(name="churn", actor="test")
        for _ in range(2):
            version_create(model=model, source="upload", actor="test")
        version_create(
            model=model,
            source="provider",
            provider=provider,
            external_id="gpt-4o-mini",
            actor="test",
        )

    response = client.delete(f"{URL}{provider.pk}/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "in_use"
    assert response.json()["error"]["fields"] == {
        "dependents": ["model version churn v3"]
    }
    assert stored(tenant_a, provider.pk).name == provider.name


def test_audit_events_for_create_update_key_change_and_delete(tenant_a, client):
    created = client.post(
        URL,
        {"name": "aud", "kind": "openai", "base_url": UNUSED_URL, "api_key": CANARY},
        format="json",
    ).json()
    detail = f"{URL}{created['id']}/"
    client.patch(detail, {"default_model": "gpt-4o"}, format="json")
    client.patch(detail, {"api_key": "sk-canary-second-key-wxyz"}, format="json")
    client.delete(detail)

    events = audit_actions(tenant_a, created["id"])

    assert [e.action for e in events] == [
        "provider.create",
        "provider.update",
        "provider.key_change",
        "provider.delete",
    ]
    assert {e.actor for e in events} == {"boss@alpha.test"}
    assert events[1].before == {"default_model": ""}
    assert events[1].after == {"default_model": "gpt-4o"}
    assert events[2].before == {"api_key": "••••abcd"}
    assert events[2].after == {"api_key": "••••wxyz"}
    for event in events:
        assert "sk-canary-" not in str(event.before) + str(event.after)
