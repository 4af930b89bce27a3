"""Shared by the model API and page tests: models and versions made through the
services, a fake OpenAI catalogue on 127.0.0.1, audit reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from pytest_httpserver import HTTPServer

from tests.providers.helpers import UNUSED_URL, fake_openai_models, provider_in

__all__ = [
    "UNUSED_URL",
    "audit_of",
    "catalogue_provider",
    "fake_openai_models",
    "make_httpserver",
    "model_in",
    "provider_in",
    "rich_metadata",
    "version_in",
]


@pytest.fixture(scope="session")
def make_httpserver(httpserver_listen_address: tuple[str, int]) -> Iterator[HTTPServer]:
    host, port = httpserver_listen_address
    server = HTTPServer(host=host, port=port, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def catalogue_provider(
    tenant: Any, httpserver: HTTPServer, ids: list[str], **kw: Any
) -> Any:
    """An OpenAI provider in `tenant` whose GET /v1/models lists `ids`."""
    return provider_in(tenant, base_url=fake_openai_models(httpserver, ids), **kw)


def model_in(tenant: Any, name: str, **fields: Any) -> Any:
    from apps.registry.services import model_create

    with schema_context(tenant.schema_name):
        return model_create(name=name, actor="test", **fields)


def version_in(tenant: Any, model: Any, **fields: Any) -> Any:
    """A version made by version_create; source defaults to upload."""
    from apps.registry.services import version_create

    fields.setdefault("source", "upload")
    with schema_context(tenant.schema_name):
        return version_create(model=model, actor="test", **fields)


def audit_of(tenant: Any, obj: Any) -> list[tuple[str, Any, Any]]:
    """(action, before, after) of every event about `obj`, oldest first."""
    from apps.audit.models import AuditEvent

    with schema_context(tenant.schema_name):
        return [
            (e.action, e.before, e.after)
            for e in AuditEvent.objects.filter(
                object_type=obj._meta.label_lower, object_id=str(obj.pk)
            ).order_by("id")
        ]


def rich_metadata() -> dict[str, Any]:
    """Canonical metadata with every section the detail page shows."""
    return {
        "model_info": {
            "architecture": "tree_ensemble",
            "task": "classification",
            "name": "Churn GBM",
        },
        "training": {
            "dataset": "customers-2024q4",
            "framework": "scikit-learn",
            "framework_version": "1.6.1",
        },
        "performance": {"accuracy": 0.9134, "auc": 0.95, "extra": {"lift@10": 3.2}},
        "input_schema": [
            {
                "name": "tenure_months",
                "type": "integer",
                "constraints": {"minimum": 0, "maximum": 240},
            },
            {
                "name": "plan",
                "type": "categorical",
                "required": False,
                "constraints": {"enum": ["basic", "pro"]},
            },
        ],
        "output_schema": {"type": "categorical", "labels": ["stay", "churn"]},
        "pricing": {"input_per_1k": 0.25, "output_per_1k": 1.5, "currency": "EUR"},
        "license": "Apache-2.0",
        "feature_importance": {"tenure_months": 0.6, "plan": -0.3},
    }
