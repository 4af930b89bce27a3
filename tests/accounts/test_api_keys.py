"""API keys: accepted on their tenant only, while not revoked, within their scope."""

import pytest
from django_tenants.utils import schema_context

from apps.accounts.models import ApiKey
from apps.accounts.services import api_key_revoke


def test_key_is_accepted_on_its_tenant(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a, scope="manage", name="ci")

    response = api_client(tenant_a, key=raw).get("/api/v1/me/")

    assert response.status_code == 200
    assert response.json() == {
        "tenant": "alpha",
        "kind": "api_key",
        "name": "ci",
        "role": None,
        "scope": "manage",
    }


def test_key_is_refused_on_another_tenants_host(
    tenant_a, tenant_b, make_key, api_client
):
    _, raw = make_key(tenant_a)

    response = api_client(tenant_b, key=raw).get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Api-Key"


def test_revoked_key_is_refused(tenant_a, make_key, api_client):
    api_key, raw = make_key(tenant_a)
    with schema_context("alpha"):
        api_key_revoke(prefix=api_key.prefix, actor="test")

    response = api_client(tenant_a, key=raw).get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or revoked API key."


@pytest.mark.parametrize("raw", ["nodot", "abc.def", "x" * 300, ""])
def test_malformed_or_wrong_key_is_401(tenant_a, api_client, raw):
    client = api_client(tenant_a)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")

    response = client.get("/api/v1/me/")

    assert response.status_code == 401


def test_predict_key_is_refused_outside_its_scope(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=raw)

    assert client.get("/api/v1/me/").status_code == 200
    refused = client.get("/api/v1/api-keys/")
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "permission_denied",
        "message": "This API key's scope 'predict' does not allow this.",
    }
    assert client.get("/api/v1/audit-events/").status_code == 403


def test_manage_key_can_issue_and_revoke_keys_and_secret_is_shown_once(
    tenant_a, make_key, api_client
):
    _, raw = make_key(tenant_a, scope="manage")
    client = api_client(tenant_a, key=raw)

    created = client.post(
        "/api/v1/api-keys/", {"name": "web", "scope": "predict"}, format="json"
    )
    assert created.status_code == 201
    new_key = created.json()["key"]
    prefix = created.json()["prefix"]
    assert new_key.startswith(prefix + ".")
    listed = client.get(f"/api/v1/api-keys/{prefix}/").json()
    assert "key" not in listed and new_key not in str(listed)
    with schema_context("alpha"):
        stored = ApiKey.objects.get(prefix=prefix)
        assert new_key not in stored.hashed_key and stored.hashed_key.startswith(
            "sha512$$"
        )

    assert api_client(tenant_a, key=new_key).get("/api/v1/me/").status_code == 200
    revoked = client.post(f"/api/v1/api-keys/{prefix}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert api_client(tenant_a, key=new_key).get("/api/v1/me/").status_code == 401


def test_create_key_with_bad_scope_names_the_field(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a)

    response = api_client(tenant_a, key=raw).post(
        "/api/v1/api-keys/", {"name": "", "scope": "root"}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid"
    assert set(body["error"]["fields"]) == {"name", "scope"}
    assert body["error"]["message"] == (
        'Invalid input: name (This field may not be blank); scope ("root" is not a valid choice).'
    )


def test_keys_of_another_tenant_cannot_be_revoked_by_prefix(
    tenant_a, tenant_b, make_key, api_client
):
    victim, victim_raw = make_key(tenant_b)
    _, raw = make_key(tenant_a)

    response = api_client(tenant_a, key=raw).post(
        f"/api/v1/api-keys/{victim.prefix}/revoke/"
    )

    assert response.status_code == 404
    assert api_client(tenant_b, key=victim_raw).get("/api/v1/me/").status_code == 200
