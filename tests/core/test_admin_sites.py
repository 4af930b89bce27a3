"""Tenant admins see their own tables only; the platform admin sees the rest."""

from django.test import Client
from django_tenants.utils import schema_context


def test_tenant_admin_cannot_open_shared_tables(tenant_a, make_user, page_client):
    admin = make_user(tenant_a, "admin")
    client = page_client(tenant_a, admin)

    index = client.get("/admin/").content.decode()
    assert "API keys" in index and "Audit" in index
    assert "Organization" not in index and "Queued" not in index
    for path in (
        "/admin/tenants/organization/",
        "/admin/tenants/domain/",
        "/admin/django_q/ormq/",
        "/admin/django_q/success/",
    ):
        assert client.get(path).status_code == 404, path


def test_platform_admin_lists_tenants(db):
    from django.contrib.auth.models import User

    with schema_context("public"):
        root = User.objects.create_superuser("root", "root@public.test", "pw")
    client = Client(HTTP_HOST="public.test")
    client.force_login(root)

    page = client.get("/admin/tenants/organization/").content.decode()

    assert "alpha" in page and "beta" in page
