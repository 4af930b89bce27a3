"""Each role is refused what it may not do, on pages and in the API."""

import pytest
from django.contrib.auth.models import User
from django_tenants.utils import schema_context


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", 403), ("editor", 403), ("admin", 201)]
)
def test_only_admins_issue_keys_through_the_api(
    tenant_a, make_user, api_client, role, expected
):
    user = make_user(tenant_a, role)

    response = api_client(tenant_a, user=user).post(
        "/api/v1/api-keys/", {"name": "x", "scope": "predict"}, format="json"
    )

    assert response.status_code == expected
    if expected == 403:
        assert response.json()["error"]["message"] == (
            f"This needs the admin role; you are {role}."
        )


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
def test_every_role_reads_the_audit_trail(tenant_a, make_user, api_client, role):
    user = make_user(tenant_a, role)

    assert (
        api_client(tenant_a, user=user).get("/api/v1/audit-events/").status_code == 200
    )


def test_viewer_cannot_write_even_where_reading_is_allowed(
    tenant_a, make_user, api_client
):
    viewer = make_user(tenant_a, "viewer")

    response = api_client(tenant_a, user=viewer).post("/api/v1/audit-events/", {})

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("role", "expected"), [("viewer", 403), ("editor", 403), ("admin", 200)]
)
def test_api_keys_page_is_for_admins(tenant_a, make_user, page_client, role, expected):
    user = make_user(tenant_a, role)

    assert (
        page_client(tenant_a, user).get("/settings/api-keys/").status_code == expected
    )


def test_viewer_page_post_is_refused_and_creates_nothing(
    tenant_a, make_user, page_client
):
    viewer = make_user(tenant_a, "viewer")

    response = page_client(tenant_a, viewer).post(
        "/settings/api-keys/", {"name": "sneaky", "scope": "manage"}
    )

    assert response.status_code == 403
    with schema_context("alpha"):
        from apps.accounts.models import ApiKey

        assert not ApiKey.objects.filter(name="sneaky").exists()


def test_admin_issues_a_key_on_the_page_and_sees_it_once(
    tenant_a, make_user, page_client
):
    admin = make_user(tenant_a, "admin")
    client = page_client(tenant_a, admin)

    issued = client.post("/settings/api-keys/", {"name": "web", "scope": "predict"})
    html = issued.content.decode()
    assert issued.status_code == 200
    assert "Copy this key now." in html
    with schema_context("alpha"):
        from apps.accounts.models import ApiKey

        prefix = ApiKey.objects.get(name="web").prefix
    assert f'<pre class="secret" id="new-key">{prefix}.' in html

    again = client.get("/settings/api-keys/").content.decode()
    assert f"{prefix}…" in again and f"{prefix}." not in again


def test_anonymous_is_sent_to_login_and_user_without_role_is_refused(
    tenant_a, page_client, api_client
):
    assert page_client(tenant_a).get("/")["Location"] == "/accounts/login/?next=/"
    with schema_context("alpha"):
        nobody = User.objects.create_user("norole@alpha.test", password="x")

    assert page_client(tenant_a, nobody).get("/").status_code == 403
    response = api_client(tenant_a, user=nobody).get("/api/v1/me/")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        "Your account has no role in this organisation."
    )


def test_navigation_shows_settings_only_to_roles_that_may_open_them(
    tenant_a, make_user, page_client
):
    viewer_html = page_client(tenant_a, make_user(tenant_a, "viewer")).get("/").content
    admin_html = page_client(tenant_a, make_user(tenant_a, "admin")).get("/").content

    assert b'href="/settings/api-keys/"' not in viewer_html
    assert b'href="/settings/api-keys/"' in admin_html
    assert b'href="/settings/audit/"' in viewer_html
