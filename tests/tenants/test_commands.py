"""Operators' commands: create, list, delete tenants; issue keys; seed the demo."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from apps.tenants.models import Domain, Organization


def _schemas() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT schema_name FROM information_schema.schemata")
        return {row[0] for row in cursor.fetchall()}


def test_create_list_and_delete_a_tenant(db, capsys):
    call_command(
        "create_tenant",
        "gamma",
        "--name",
        "Gamma Inc",
        "--admin-email",
        "Root@Gamma.test",
        "--domain",
        "gamma.test",
    )
    out = capsys.readouterr().out
    password = out.split("Password: ")[1].split()[0]
    assert "URL:      http://gamma.test/" in out
    assert "gamma" in _schemas()

    login = Client(HTTP_HOST="gamma.test").post(
        "/accounts/login/", {"username": "root@gamma.test", "password": password}
    )
    assert login.status_code == 302

    call_command("list_tenants")
    assert "gamma\tGamma Inc\tgamma.test (primary)" in capsys.readouterr().out

    with pytest.raises(CommandError, match="Re-run with --yes"):
        call_command("delete_tenant", "gamma")
    call_command("delete_tenant", "gamma", "--yes")
    assert "gamma" not in _schemas()
    assert not Domain.objects.filter(domain="gamma.test").exists()


@pytest.mark.parametrize("slug", ["Bad-Slug", "public", "pg_x", "1abc", "a"])
def test_create_tenant_refuses_bad_slugs(db, slug):
    before = set(Organization.objects.values_list("schema_name", flat=True))
    with pytest.raises(CommandError, match="tenant slug"):
        call_command("create_tenant", slug, "--name", "X", "--admin-email", "a@b.c")
    assert set(Organization.objects.values_list("schema_name", flat=True)) == before


def test_create_tenant_refuses_a_taken_slug_or_domain(db):
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "alpha", "--name", "X", "--admin-email", "a@b.c")
    with pytest.raises(CommandError, match=r"Domain already in use: beta\.test"):
        call_command(
            "create_tenant",
            "delta",
            "--name",
            "X",
            "--admin-email",
            "a@b.c",
            "--domain",
            "beta.test",
        )
    assert "delta" not in _schemas()


def test_create_api_key_prints_a_key_accepted_only_on_its_tenant(tenant_a, capsys):
    call_command("create_api_key", "alpha", "ci")
    key = capsys.readouterr().out.strip()

    own = APIClient(HTTP_HOST="alpha.test", HTTP_AUTHORIZATION=f"Api-Key {key}")
    other = APIClient(HTTP_HOST="beta.test", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert own.get("/api/v1/me/").json()["scope"] == "manage"
    assert other.get("/api/v1/me/").status_code == 401


def test_create_api_key_for_unknown_tenant_fails(db):
    with pytest.raises(CommandError, match="No tenant 'nobody'"):
        call_command("create_api_key", "nobody", "ci")
    with pytest.raises(CommandError, match="No tenant 'public'"):
        call_command("create_api_key", "public", "ci")


@override_settings(DEMO_ADMIN_PASSWORD="demo-pass-1")
def test_seed_demo_is_idempotent_and_serves_localhost(db, capsys):
    call_command("seed_demo")
    with override_settings(DEMO_ADMIN_PASSWORD="demo-pass-2"):
        call_command("seed_demo")
    out = capsys.readouterr().out

    assert Organization.objects.filter(schema_name="demo").count() == 1
    assert set(
        Domain.objects.filter(tenant__schema_name="demo").values_list(
            "domain", flat=True
        )
    ) == {"demo.localhost", "localhost", "127.0.0.1"}
    assert "Sign in:  admin@demo.localhost / demo-pass-2" in out
    login = Client(HTTP_HOST="localhost").post(
        "/accounts/login/",
        {"username": "admin@demo.localhost", "password": "demo-pass-2"},
    )
    assert login.status_code == 302
    with schema_context("demo"):
        from django.contrib.auth.models import User

        assert User.objects.filter(username="admin@demo.localhost").count() == 1
    call_command("delete_tenant", "demo", "--yes")
