"""Shared by the provider API and page tests."""

from __future__ import annotations

import os
import socket
from typing import Any

from django_tenants.utils import schema_context

# A key whose every appearance in a response is a leak.
CANARY = "sk-canary-0123456789abcd"
# Allow-listed in test settings and never called: nothing listens on port 9 (discard).
UNUSED_URL = "http://127.0.0.1:9/v1"


def provider_in(tenant: Any, **fields: Any) -> Any:
    """A provider made through the service in `tenant`, with the canary key."""
    from apps.providers.services import provider_create

    fields.setdefault("name", f"provider-{os.urandom(3).hex()}")
    fields.setdefault("kind", "openai")
    fields.setdefault("base_url", UNUSED_URL)
    fields.setdefault("api_key", CANARY)
    with schema_context(tenant.schema_name):
        return provider_create(actor="test", **fields)


def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stored(tenant: Any, pk: int) -> Any:
    from apps.providers.models import ProviderConfig

    with schema_context(tenant.schema_name):
        return ProviderConfig.objects.get(pk=pk)


def audit_actions(tenant: Any, pk: int) -> list[Any]:
    from apps.audit.models import AuditEvent

    with schema_context(tenant.schema_name):
        return list(
            AuditEvent.objects.filter(
                object_type="providers.providerconfig", object_id=str(pk)
            ).order_by("id")
        )


def fake_openai_models(httpserver: Any, ids: list[str]) -> str:
    """Serve GET /v1/models like OpenAI; returns the base URL to configure."""
    httpserver.expect_request("/v1/models").respond_with_json(
        {
            "object": "list",
            "data": [
                {"id": i, "object": "model", "created": 1700000000, "owned_by": "me"}
                for i in ids
            ],
        }
    )
    return httpserver.url_for("/v1")


def ask(provider: Any, question: str = "?", **options: Any) -> Any:
    """One chat call through call_provider (its options: attempts=...)."""
    from apps.providers.connectors.base import InvokeRequest
    from apps.providers.resilience import call_provider

    request = InvokeRequest(messages=[{"role": "user", "content": question}])
    return call_provider(provider, lambda c: c.invoke(request), **options)
