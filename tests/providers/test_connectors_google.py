"""Gemini through its OpenAI-compatible endpoint (/v1beta/openai/), openai SDK."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from apps.providers.connectors.base import InvokeRequest
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider
from apps.providers.services import provider_models

KEY = "AIzaSy-test-google-0123456789"

pytestmark = pytest.mark.usefixtures("alpha")


@pytest.fixture
def provider(httpserver, make_provider) -> ProviderConfig:
    return make_provider(
        kind="google",
        base_url=httpserver.url_for("/v1beta/openai/"),
        api_key=KEY,
        default_model="gemini-2.5-flash",
        price_per_1k_input=Decimal("0.3"),
        price_per_1k_output=Decimal("2.5"),
    )


def test_invoke_posts_to_the_openai_compatible_route(httpserver, provider, usage_today):
    httpserver.expect_request(
        "/v1beta/openai/chat/completions", method="POST"
    ).respond_with_json(
        {
            "id": "Wm3CaN7-Lq2ZkdUPwJ6W2Qg",
            "object": "chat.completion",
            "created": 1757637978,
            "model": "gemini-2.5-flash",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 8,
                "completion_tokens": 4,
                "total_tokens": 12,
            },
        }
    )

    result = call_provider(
        provider,
        lambda c: c.invoke(
            InvokeRequest(
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ]
            )
        ),
    )

    assert (result.output, result.tokens_in, result.tokens_out) == (
        "Hello there.",
        8,
        4,
    )
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.get_data()) == {
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
    }
    assert usage_today(provider) == {
        "requests": 1,
        "errors": 0,
        "tokens_in": 8,
        "tokens_out": 4,
        # (8 * 0.3 + 4 * 2.5) / 1000
        "cost": Decimal("0.012400"),
    }


def test_models_strip_the_models_prefix(httpserver, provider):
    httpserver.expect_request("/v1beta/openai/models", method="GET").respond_with_json(
        {
            "object": "list",
            "data": [
                {
                    "id": "models/gemini-2.5-flash",
                    "object": "model",
                    "owned_by": "google",
                },
                {
                    "id": "models/gemini-embedding-001",
                    "object": "model",
                    "owned_by": "google",
                },
            ],
        }
    )

    models = provider_models(provider=provider)

    assert [(m.id, m.capabilities) for m in models] == [
        ("gemini-2.5-flash", ("chat", "completion")),
        ("gemini-embedding-001", ("embedding",)),
    ]
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
