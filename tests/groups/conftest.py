"""Serving tests: groups in tenant alpha, fake provider servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django_tenants.utils import schema_context
from pytest_httpserver import HTTPServer

from apps.groups.serving import clear_route_cache


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


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
