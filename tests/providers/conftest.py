"""Provider tests: fake provider servers on 127.0.0.1 (the only address the test
SSRF allow-list admits) and providers made in tenant "alpha"."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="session")
def make_httpserver(httpserver_listen_address: tuple[str, int]) -> Iterator[HTTPServer]:
    # Threaded: a handler that stalls (timeout tests) must not hold up the retry.
    host, port = httpserver_listen_address
    server = HTTPServer(host=host, port=port, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def alpha(db: Any) -> Iterator[None]:
    """Run the test inside tenant alpha's schema (provider tables live there)."""
    with schema_context("alpha"):
        yield


@pytest.fixture
def make_provider(db: Any):  # type: ignore[no-untyped-def]
    """make_provider(**fields) -> a ProviderConfig in alpha, made by provider_create."""
    from apps.providers.services import provider_create

    def make(**fields: Any):  # type: ignore[no-untyped-def]
        fields.setdefault("name", f"provider-{os.urandom(3).hex()}")
        with schema_context("alpha"):
            return provider_create(actor="test", **fields)

    return make


@pytest.fixture
def usage_today(db: Any):  # type: ignore[no-untyped-def]
    """usage_today(provider) -> today's ProviderUsage counters as a dict ({} if none)."""
    from django.utils import timezone

    from apps.providers.models import ProviderUsage

    def read(provider: Any) -> dict[str, Any]:
        with schema_context("alpha"):
            row = (
                ProviderUsage.objects.filter(
                    provider=provider, day=timezone.localdate()
                )
                .values("requests", "errors", "tokens_in", "tokens_out", "cost")
                .first()
            )
        return row or {}

    return read
