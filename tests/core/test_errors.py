"""Every 4xx/5xx on API paths leaves in one envelope with the request id."""

import pytest
from django.test import Client, override_settings
from django.urls import include, path

from tests.conftest import TENANT_A


def _boom(request):
    raise RuntimeError("secret detail that must not leak")


urlpatterns = [
    path("api/v1/boom/", _boom),
    path("boom/", _boom),
    path("", include("config.urls_tenants")),
]
handler500 = "apps.core.errors.handler500"


def _assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response["X-Request-ID"]
    return body


def test_400_names_the_fields(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a)
    response = api_client(tenant_a, key=raw).post(
        "/api/v1/api-keys/", {"scope": "manage"}, format="json"
    )
    body = _assert_envelope(response, 400, "invalid")
    assert body["error"]["fields"] == {"name": ["This field is required."]}


def test_400_on_malformed_json(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a)
    response = api_client(tenant_a, key=raw).post(
        "/api/v1/api-keys/", "{not json", content_type="application/json"
    )
    _assert_envelope(response, 400, "parse_error")


def test_401_without_credentials(tenant_a, api_client):
    _assert_envelope(api_client(tenant_a).get("/api/v1/me/"), 401, "not_authenticated")


def test_403_outside_scope(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a, scope="predict")
    _assert_envelope(
        api_client(tenant_a, key=raw).get("/api/v1/api-keys/"), 403, "permission_denied"
    )


def test_404_for_unknown_route_and_unknown_object(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a)
    client = api_client(tenant_a, key=raw)
    _assert_envelope(client.get("/api/v1/no-such-thing/"), 404, "not_found")
    _assert_envelope(client.get("/api/v1/api-keys/nosuchpf/"), 404, "not_found")


def test_405_for_wrong_method(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a)
    _assert_envelope(
        api_client(tenant_a, key=raw).delete("/api/v1/me/"), 405, "method_not_allowed"
    )


@override_settings(ROOT_URLCONF=__name__)
def test_500_is_an_envelope_on_api_paths_and_a_page_elsewhere(tenant_a):
    client = Client(HTTP_HOST=TENANT_A[1], raise_request_exception=False)

    api = client.get("/api/v1/boom/")
    body = _assert_envelope(api, 500, "server_error")
    assert "secret detail" not in str(body)

    page = client.get("/boom/")
    assert page.status_code == 500
    assert page["X-Request-ID"] in page.content.decode()
    assert "secret detail" not in page.content.decode()


@pytest.mark.parametrize("path", ["/nothing-here/", "/settings/nothing/"])
def test_404_page_for_people(tenant_a, path):
    response = Client(HTTP_HOST=TENANT_A[1]).get(path)
    assert response.status_code == 404
    assert "There is nothing at this address." in response.content.decode()
