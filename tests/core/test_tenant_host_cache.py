"""Which tenant a host selects is remembered per process for a few seconds: fewer
queries per request, never the wrong tenant, and a change made here is seen at once."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from tests.conftest import host_of


def _tenant_queries(client: Client, path: str = "/api/v1/groups/") -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return [q["sql"] for q in queries if "tenants_domain" in q["sql"]]


@pytest.fixture
def remember(settings):  # type: ignore[no-untyped-def]
    settings.TENANT_HOST_CACHE_SECONDS = 60


def test_a_host_is_looked_up_once_then_remembered(remember, tenant_a):
    client = Client(HTTP_HOST=host_of(tenant_a))
    assert len(_tenant_queries(client)) == 1
    assert _tenant_queries(client) == []


def test_zero_looks_the_host_up_on_every_request(settings, tenant_a):
    settings.TENANT_HOST_CACHE_SECONDS = 0
    client = Client(HTTP_HOST=host_of(tenant_a))
    assert len(_tenant_queries(client)) == 1
    assert len(_tenant_queries(client)) == 1


def test_each_host_keeps_its_own_tenant(
    remember, api_client, make_key, tenant_a, tenant_b
):
    """Requests alternating between two tenants' hosts each see their own data."""
    _, key_a = make_key(tenant_a)
    _, key_b = make_key(tenant_b)
    for _ in range(3):
        for tenant, key, other in ((tenant_a, key_a, key_b), (tenant_b, key_b, key_a)):
            assert api_client(tenant, key=key).get("/api/v1/groups/").status_code == 200
            # The other tenant's key is unknown here: its schema was not used.
            assert (
                api_client(tenant, key=other).get("/api/v1/groups/").status_code == 401
            )


def test_a_removed_domain_is_forgotten_at_once_in_this_process(remember, tenant_a):
    from apps.tenants.models import Domain

    Domain.objects.create(domain="extra-alpha.test", tenant=tenant_a, is_primary=False)
    client = Client(HTTP_HOST="extra-alpha.test")
    assert client.get("/api/v1/groups/").status_code == 401  # a tenant: asks for a key
    Domain.objects.filter(domain="extra-alpha.test").delete()
    response = client.get("/api/v1/groups/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_host"


def test_an_unknown_host_is_not_remembered(remember, tenant_a):
    from apps.tenants.models import Domain

    client = Client(HTTP_HOST="later.test")
    assert client.get("/api/v1/groups/").status_code == 404
    # Created without the signal (as another process would): found at once anyway.
    Domain.objects.bulk_create(
        [Domain(domain="later.test", tenant=tenant_a, is_primary=False)]
    )
    assert client.get("/api/v1/groups/").status_code == 401


def test_a_tenant_deleted_by_another_process_is_a_404_not_a_500(
    django_db_setup, django_db_blocker, settings
):
    """Another process deleted the organisation while this one still remembers its
    host: requests get the unknown-host 404, and the host is forgotten."""
    from apps.accounts.services import api_key_create
    from apps.tenants.models import Organization
    from apps.tenants.services import tenant_create, tenant_delete

    settings.TENANT_HOST_CACHE_SECONDS = 60
    slug = "gonehost"
    with django_db_blocker.unblock():
        if Organization.objects.filter(schema_name=slug).exists():
            tenant_delete(slug=slug)  # left over by an interrupted run
        tenant_create(slug=slug, name="Gone", admin_email=f"admin@{slug}.test")
        try:
            with schema_context(slug):
                _, key = api_key_create(name="k", scope="manage", actor="test")
            connection.set_schema_to_public()
            client = Client(HTTP_HOST=f"{slug}.localhost")
            auth = {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
            assert client.get("/api/v1/groups/", **auth).status_code == 200
            with connection.cursor() as cursor:  # as another process would: no signal
                cursor.execute(f'DROP SCHEMA "{slug}" CASCADE')
                cursor.execute(
                    "DELETE FROM tenants_domain WHERE tenant_id = "
                    "(SELECT id FROM tenants_organization WHERE schema_name = %s)",
                    [slug],
                )
                cursor.execute(
                    "DELETE FROM tenants_organization WHERE schema_name = %s", [slug]
                )

            response = client.get("/api/v1/groups/", **auth)

            assert response.status_code == 404, response.content[:300]
            assert response.json()["error"]["code"] == "unknown_host"
            # Forgotten: the next request looks the host up (and finds nothing).
            assert client.get("/api/v1/groups/", **auth).status_code == 404
        finally:
            connection.set_schema_to_public()
            if Organization.objects.filter(schema_name=slug).exists():
                tenant_delete(slug=slug)


def test_whether_a_failed_query_means_the_tenant_is_gone_is_asked_once(
    monkeypatch, tenant_a
):
    # DRF's handler, the middleware and handler500 may each ask about one exception.
    from django.db import ProgrammingError

    from apps.core import errors

    asked: list[str] = []

    def exists(schema: str) -> bool:
        asked.append(schema)
        return True

    monkeypatch.setattr("django_tenants.utils.schema_exists", exists)
    failure = ProgrammingError("relation does not exist")
    # as in a request outside a transaction (this test runs inside one)
    connection.in_atomic_block = False
    try:
        with schema_context("alpha"):
            answers = [errors.tenant_gone(failure) for _ in range(3)]
    finally:
        connection.in_atomic_block = True

    assert answers == [False, False, False] and asked == ["alpha"]
