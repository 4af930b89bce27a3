"""Test harness: real PostgreSQL (embedded unless DATABASE_URL), two tenants made
once per session, clients bound to a tenant's host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from apps.core import embedded_db

TENANT_A = ("alpha", "alpha.test")
TENANT_B = ("beta", "beta.test")
PASSWORD = "correct-horse-battery"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not os.environ.get("DATABASE_URL"):
        embedded_db.start()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """After pytest-django has migrated the public schema: the public tenant and two
    customer tenants with their schemas, each with an admin user.

    pytest-django creates the test database only when a selected test asks for `db`;
    tests that only open their own connections (servers, workers, the spool's drain)
    would otherwise run against the development database: it is created here then."""
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    from apps.tenants.models import Organization
    from apps.tenants.services import public_tenant_ensure, tenant_create

    created = None
    with django_db_blocker.unblock():
        if (
            connection.settings_dict["NAME"]
            != settings.DATABASES["default"]["TEST"]["NAME"]
        ):
            created = setup_databases(
                verbosity=0, interactive=False, aliases={"default", "replica"}
            )
        public_tenant_ensure(domain="public.test")
        for slug, host in (TENANT_A, TENANT_B):
            if not Organization.objects.filter(schema_name=slug).exists():
                tenant_create(
                    slug=slug,
                    name=slug.title(),
                    admin_email=f"admin@{host}",
                    domains=[host],
                    admin_password=PASSWORD,
                )
    yield
    # Servers and workers the tests started are gone, but their sessions may still be
    # closing: end them, so that the test database can be dropped.
    from django.db import connections

    with django_db_blocker.unblock():
        connections["replica"].close()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        if created is not None:
            teardown_databases(created, verbosity=0)


@pytest.fixture(autouse=True)
def _back_to_public() -> Iterator[None]:
    yield
    connection.set_schema_to_public()
    # What a process trusts for a second or two (routes, verified keys) must not
    # outlive the test whose rolled-back transaction created it.
    from apps.accounts.throttling import _leases
    from apps.core.trust import forget_all
    from apps.groups.serving import clear_route_cache

    clear_route_cache()
    forget_all()
    _leases.clear()


@pytest.fixture(scope="module")
def trained() -> Iterator[Any]:
    """The demo's models trained once per module, and given to seed_demo_content
    (which would train them again) while the module runs."""
    from apps.tenants import demo

    models = demo.train_demo_models()
    original = demo.train_demo_models
    demo.train_demo_models = lambda: models  # type: ignore[assignment]
    yield models
    demo.train_demo_models = original  # type: ignore[assignment]


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """Local fake servers (pytest-httpserver) listen on 127.0.0.1: the only address
    the test settings' SSRF allow-list admits. One server per session, so every
    test directory must agree."""
    return ("127.0.0.1", 0)


@pytest.fixture
def tenant_a(db):  # type: ignore[no-untyped-def]
    from apps.tenants.models import Organization

    return Organization.objects.get(schema_name=TENANT_A[0])


@pytest.fixture
def tenant_b(db):  # type: ignore[no-untyped-def]
    from apps.tenants.models import Organization

    return Organization.objects.get(schema_name=TENANT_B[0])


def host_of(tenant) -> str:  # type: ignore[no-untyped-def]
    return {TENANT_A[0]: TENANT_A[1], TENANT_B[0]: TENANT_B[1]}[tenant.schema_name]


@pytest.fixture
def make_user(db):  # type: ignore[no-untyped-def]
    """make_user(tenant, role) -> a User with PASSWORD in that tenant's schema."""
    from apps.accounts.services import user_create

    def make(tenant, role: str, email: str | None = None):  # type: ignore[no-untyped-def]
        with schema_context(tenant.schema_name):
            return user_create(
                email=email or f"{role}-{os.urandom(3).hex()}@{host_of(tenant)}",
                role=role,
                password=PASSWORD,
            )

    return make


@pytest.fixture
def make_key(db):  # type: ignore[no-untyped-def]
    """make_key(tenant, scope="manage") -> (ApiKey, raw key)."""
    from apps.accounts.services import api_key_create

    def make(tenant, scope: str = "manage", name: str = "test"):  # type: ignore[no-untyped-def]
        with schema_context(tenant.schema_name):
            return api_key_create(name=name, scope=scope, actor="test")

    return make


@pytest.fixture
def page_client(db):  # type: ignore[no-untyped-def]
    """page_client(tenant, user=None) -> a Django test client on that tenant's host."""

    def make(tenant, user=None):  # type: ignore[no-untyped-def]
        client = Client(HTTP_HOST=host_of(tenant))
        if user is not None:
            with schema_context(tenant.schema_name):
                client.force_login(user)
        return client

    return make


@pytest.fixture
def api_client(db):  # type: ignore[no-untyped-def]
    """api_client(tenant, key=None, user=None) -> a DRF client on the tenant's host."""

    def make(tenant, key: str | None = None, user=None, host: str | None = None):  # type: ignore[no-untyped-def]
        client = APIClient(HTTP_HOST=host or host_of(tenant))
        if key:
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        if user is not None:
            with schema_context(tenant.schema_name):
                client.force_login(user)
        return client

    return make


@pytest.fixture
def in_process_http(db):  # type: ignore[no-untyped-def]
    """An httpx2 transport that hands requests straight to our WSGI app, so real SDKs
    (openai, ...) can talk to it inside the test's transaction. Like Django's test
    client, it keeps request signals from closing the test's connection."""
    import httpx2
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield httpx2.WSGITransport(app=WSGIHandler())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
