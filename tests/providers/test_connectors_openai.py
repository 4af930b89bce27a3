"""OpenAI connector against a local server speaking OpenAI's wire format."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from apps.providers.connectors.base import InvokeRequest
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider
from apps.providers.services import provider_models, provider_test
from tests.providers.helpers import ask

# Public example bodies (the OpenAI spec's own examples), copied into the repo.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KEY = "sk-test-openai-0123456789"
COMPLETION = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
}

pytestmark = pytest.mark.usefixtures("alpha")


def models_list_body() -> dict:
    # The spec's published example has a trailing comma: not strict JSON.
    text = (FIXTURES / "openai_models_list.json").read_text()
    return json.loads(re.sub(r",(\s*[\]}])", r"\1", text))


@pytest.fixture
def provider(httpserver, make_provider) -> ProviderConfig:
    return make_provider(
        kind="openai",
        base_url=httpserver.url_for("/v1"),
        api_key=KEY,
        organization="org-acme",
        default_model="gpt-4.1",
        price_per_1k_input=Decimal("2"),
        price_per_1k_output=Decimal("8"),
    )


def test_invoke_sends_chat_completion_and_maps_answer_and_usage(
    httpserver, provider, usage_today
):
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        COMPLETION
    )

    result = call_provider(
        provider,
        lambda c: c.invoke(
            InvokeRequest(
                messages=[{"role": "user", "content": "Capital of France?"}],
                parameters={"temperature": 0.2, "max_tokens": 50, "unknown": 1},
            )
        ),
    )

    assert (result.output, result.model) == ("Paris.", "gpt-4.1-2025-04-14")
    assert (result.tokens_in, result.tokens_out, result.finish_reason) == (
        19,
        10,
        "stop",
    )
    assert result.raw["id"] == "chatcmpl-abc123"
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["OpenAI-Organization"] == "org-acme"
    assert json.loads(request.get_data()) == {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    assert usage_today(provider) == {
        "requests": 1,
        "errors": 0,
        "tokens_in": 19,
        "tokens_out": 10,
        # (19 * 2 + 10 * 8) / 1000
        "cost": Decimal("0.118000"),
    }


def test_a_chat_call_sends_the_headers_the_sdk_sends(httpserver, make_provider):
    """The serving call is one POST on the SDK client's own pool: the same key,
    organisation, project, user agent and content headers as the SDK's own requests
    (here its models listing)."""
    provider = make_provider(
        kind="openai",
        base_url=httpserver.url_for("/v1"),
        api_key=KEY,
        organization="org-acme",
        project="proj_ward",
        default_model="gpt-4.1",
    )
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        COMPLETION
    )
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(
        models_list_body()
    )

    ask(provider)
    provider_models(provider=provider)

    [(chat, _), (listing, _)] = httpserver.log
    names = (
        "Authorization",
        "OpenAI-Organization",
        "OpenAI-Project",
        "User-Agent",
        "Accept",
        "Content-Type",
    )
    assert {n: chat.headers.get(n) for n in names} == {
        n: listing.headers.get(n) for n in names
    } | {"Content-Type": "application/json"}
    assert chat.headers["OpenAI-Project"] == "proj_ward"
    assert chat.headers["User-Agent"].startswith("OpenAI/Python")


def test_a_key_http_cannot_carry_is_a_provider_error_not_a_crash(
    httpserver, make_provider, usage_today
):
    from apps.providers.errors import ProviderError

    provider = make_provider(
        kind="openai",
        base_url=httpserver.url_for("/v1"),
        api_key="sk-clé-0123456789",
        default_model="gpt-4.1",
    )
    with pytest.raises(ProviderError) as caught:
        ask(provider)

    assert caught.value.code == "bad_request"
    assert "clé" not in str(caught.value)
    assert usage_today(provider)["errors"] == 1
    assert httpserver.log == []

    # The SDK's own calls with that key: a provider error too, not a crash
    with pytest.raises(ProviderError) as listing:
        call_provider(provider, lambda c: c.list_models(), attempts=1)
    assert "clé" not in str(listing.value)
    assert httpserver.log == []


@pytest.mark.parametrize(
    "body",
    [
        {"id": "x", "object": "chat.completion", "choices": []},
        {"choices": [{"index": 0}]},
        {"choices": [{"message": {"content": {"not": "text"}}}]},
        {"choices": "none"},
        ["not", "an", "object"],
        # not JSON at all, though Python's encoder writes it
        {"choices": [{"message": {"content": "hi"}, "logprobs": float("nan")}]},
    ],
)
def test_a_json_answer_that_is_not_a_chat_completion_is_a_provider_error(
    httpserver, provider, body
):
    from apps.providers.errors import ProviderError

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        body
    )
    with pytest.raises(ProviderError, match="malformed response") as caught:
        ask(provider, attempts=1)
    assert caught.value.code == "provider_error"


def test_models_lists_the_catalogue_from_the_published_example(
    httpserver, provider, usage_today
):
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(
        models_list_body()
    )

    models = provider_models(provider=provider)

    assert [(m.id, m.owned_by, m.created) for m in models] == [
        ("model-id-0", "organization-owner", 1686935002),
        ("model-id-1", "organization-owner", 1686935002),
        ("model-id-2", "openai", 1686935002),
    ]
    assert models[2].capabilities == ("chat", "completion")
    assert models[2].raw["shutdown_date"] == "2026-10-23"
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert usage_today(provider) == {
        "requests": 1,
        "errors": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }


def test_provider_test_stores_ok_after_listing_models(httpserver, provider):
    httpserver.expect_request("/v1/models").respond_with_json(models_list_body())

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == ("ok", "")
    assert tested.last_health_latency_ms is not None
    assert len(httpserver.log) == 1


def test_provider_test_stores_auth_error_for_rejected_key(
    httpserver, provider, usage_today
):
    httpserver.expect_request("/v1/models").respond_with_json(
        {
            "error": {
                "message": "Invalid authentication",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        status=401,
    )

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == (
        "error",
        "auth",
    )
    assert "Invalid authentication" in tested.last_health_error
    assert usage_today(provider)["errors"] == 1
