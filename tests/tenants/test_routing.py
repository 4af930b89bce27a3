"""The host decides the tenant; unknown hosts are 404, never the public site."""

from django.test import Client

from tests.conftest import PASSWORD


def test_same_path_on_two_hosts_returns_each_tenants_own_data(
    tenant_a, tenant_b, make_key, make_user, api_client
):
    make_key(tenant_a, name="alpha-only")
    make_key(tenant_b, name="beta-only")
    admin_a = make_user(tenant_a, "admin")
    admin_b = make_user(tenant_b, "admin")

    names_a = [
        k["name"]
        for k in api_client(tenant_a, user=admin_a)
        .get("/api/v1/api-keys/")
        .json()["results"]
    ]
    names_b = [
        k["name"]
        for k in api_client(tenant_b, user=admin_b)
        .get("/api/v1/api-keys/")
        .json()["results"]
    ]

    assert names_a == ["alpha-only"]
    assert names_b == ["beta-only"]


def test_dashboard_counts_come_from_the_tenants_schema(
    tenant_a, tenant_b, make_key, make_user, page_client
):
    make_key(tenant_a, name="k1")
    make_key(tenant_a, name="k2")
    viewer_a = make_user(tenant_a, "viewer")
    viewer_b = make_user(tenant_b, "viewer")

    page_a = page_client(tenant_a, viewer_a).get("/").content.decode()
    page_b = page_client(tenant_b, viewer_b).get("/").content.decode()

    assert '<div class="num">2</div><div>active API keys</div>' in page_a
    assert '<div class="num">0</div><div>active API keys</div>' in page_b
    assert "Alpha" in page_a and "Beta" not in page_a


def test_unknown_host_is_404_for_pages_and_api(db):
    client = Client(HTTP_HOST="nobody.test")

    page = client.get("/")
    api = client.get("/api/v1/me/")

    assert page.status_code == 404
    assert "ModelHub platform" not in page.content.decode()
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "unknown_host"
    assert api.json()["request_id"] == api["X-Request-ID"]


def test_public_host_serves_landing_and_platform_admin_but_no_tenant_routes(db):
    client = Client(HTTP_HOST="public.test")

    assert client.get("/").status_code == 200
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/api/v1/me/").status_code == 404
    assert client.get("/settings/api-keys/").status_code == 404


def test_session_of_one_tenant_is_not_valid_on_another(tenant_a, tenant_b, make_user):
    admin_a = make_user(tenant_a, "admin", email="shared@example.com")
    client = Client(HTTP_HOST="alpha.test")
    assert (
        client.login(username="shared@example.com", password=PASSWORD) is False
    )  # public

    from django_tenants.utils import schema_context

    with schema_context("alpha"):
        client.force_login(admin_a)
    assert client.get("/").status_code == 200
    # Same cookie jar, other tenant's host: that schema has no such session.
    response = client.get("/", HTTP_HOST="beta.test")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_with_password_works_on_own_host_only(tenant_a, tenant_b, make_user):
    make_user(tenant_a, "editor", email="ed@alpha.test")

    own = Client(HTTP_HOST="alpha.test").post(
        "/accounts/login/", {"username": "ed@alpha.test", "password": PASSWORD}
    )
    other = Client(HTTP_HOST="beta.test").post(
        "/accounts/login/", {"username": "ed@alpha.test", "password": PASSWORD}
    )

    assert own.status_code == 302 and own["Location"] == "/"
    assert other.status_code == 200
    assert "Email or password is wrong." in other.content.decode()
