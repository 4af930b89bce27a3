"""Serving tests: groups in tenant alpha, fake provider servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from pytest_httpserver import HTTPServer

from apps.groups.serving import clear_route_cache


@pytest.fixture(autouse=True)
def _fresh_routes() -> Iterator[None]:
    clear_route_cache()
    yield
    clear_route_cache()


@pytest.fixture
def in_alpha(tenant_a: Any) -> Iterator[None]:
    with schema_context("alpha"):
        yield


def chat_completion(content: str, model: str = "upstream-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1764201600,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def serve_chat(server: HTTPServer, path: str, content: str) -> None:
    server.expect_request(path, method="POST").respond_with_json(
        chat_completion(content)
    )


def llm_group_create(
    slug: str, members: list[tuple[str, str, int]], **provider_fields: Any
) -> Any:
    """An active group in the current schema whose members are OpenAI-compatible
    providers: members = [(provider base_url, role, weight), ...]."""
    from apps.groups.services import group_create, group_set_status, members_set
    from apps.providers.services import provider_create
    from apps.registry.services import model_import

    group = group_create(
        name=slug, slug=slug, actor="t", traffic_config={"sticky": True}
    )
    versions = []
    for index, (base_url, role, weight) in enumerate(members):
        provider = provider_create(
            actor="t",
            name=f"{slug}-{index}",
            kind="openai",
            base_url=base_url,
            api_key=f"sk-{slug}-{index}-123456",
            **provider_fields,
        )
        imported = model_import(
            provider=provider, external_id=f"gpt-{index}", actor="t"
        )
        versions.append(
            {"version_id": imported.version_id, "role": role, "weight": weight}
        )
    members_set(group=group, actor="t", members=versions)
    group_set_status(group=group, status="active", actor="t")
    return group
