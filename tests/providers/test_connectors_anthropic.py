"""Anthropic connector against a local server speaking the Messages API."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from apps.providers.connectors.anthropic import AnthropicConnector
from apps.providers.connectors.base import InvokeRequest
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider
from apps.providers.services import provider_models, provider_test
from tests.providers.helpers import ask

KEY = "sk-ant-api03-test-0123456789"
MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-6-20260205",
    "content": [
        {"type": "text", "text": "Bonjour"},
        {"type": "text", "text": " à vous."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 21, "output_tokens": 7},
}
MODELS = {
    "data": [
        {
            "type": "model",
            "id": "claude-opus-4-6",
            "display_name": "Claude Opus 4.6",
            "created_at": "2026-02-05T00:00:00Z",
            "lifecycle": "active",
            "max_input_tokens": 200000,
            "max_tokens": 64000,
            "capabilities": {"image_input": {"supported": True}},
        },
        {
            "type": "model",
            "id": "claude-3-haiku-20240307",
            "display_name": "Claude Haiku 3",
            "created_at": "2024-03-07T00:00:00Z",
            "lifecycle": "deprecated",
        },
    ],
    "has_more": False,
    "first_id": "claude-opus-4-6",
    "last_id": "claude-3-haiku-20240307",
}

pytestmark = pytest.mark.usefixtures("alpha")


@pytest.fixture
def provider(httpserver, make_provider) -> ProviderConfig:
    return make_provider(
        kind="anthropic",
        base_url=httpserver.url_for("/").rstrip("/"),
        api_key=KEY,
        default_model="claude-opus-4-6",
        price_per_1k_input=Decimal("3"),
        price_per_1k_output=Decimal("15"),
    )


def test_invoke_moves_system_messages_and_joins_text_blocks(
    httpserver, provider, usage_today
):
    httpserver.expect_request("/v1/messages", method="POST").respond_with_json(MESSAGE)

    result = call_provider(
        provider,
        lambda c: c.invoke(
            InvokeRequest(
                messages=[
                    {"role": "system", "content": "Answer in French."},
                    {"role": "user", "content": "Hello"},
                ],
                parameters={"stop": "###", "temperature": 0.5},
            )
        ),
    )

    assert result.output == "Bonjour à vous."
    assert (result.model, result.finish_reason) == (
        "claude-opus-4-6-20260205",
        "end_turn",
    )
    assert (result.tokens_in, result.tokens_out) == (21, 7)
    assert result.raw["id"] == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    [(request, _)] = httpserver.log
    # anthropic 2.x sends the API key as a bearer token, not x-api-key.
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert "X-Api-Key" not in request.headers
    assert request.headers["Anthropic-Version"]
    assert json.loads(request.get_data()) == {
        "model": "claude-opus-4-6",
        "max_tokens": 1024,
        "system": "Answer in French.",
        "messages": [{"role": "user", "content": "Hello"}],
        "stop_sequences": ["###"],
    }
    assert usage_today(provider) == {
        "requests": 1,
        "errors": 0,
        "tokens_in": 21,
        "tokens_out": 7,
        # (21 * 3 + 7 * 15) / 1000
        "cost": Decimal("0.168000"),
    }


def test_invoke_passes_max_tokens_from_parameters(httpserver, provider):
    httpserver.expect_request("/v1/messages", method="POST").respond_with_json(MESSAGE)

    call_provider(
        provider,
        lambda c: c.invoke(
            InvokeRequest(
                model="claude-opus-4-1",
                messages=[{"role": "user", "content": "Hi"}],
                parameters={"max_tokens": 64},
            )
        ),
    )

    [(request, _)] = httpserver.log
    body = json.loads(request.get_data())
    assert (body["model"], body["max_tokens"]) == ("claude-opus-4-1", 64)
    assert "system" not in body


def test_models_map_display_name_created_at_and_limits(
    httpserver, provider, usage_today
):
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(MODELS)

    models = provider_models(provider=provider)

    assert [(m.id, m.name, m.created) for m in models] == [
        ("claude-opus-4-6", "Claude Opus 4.6", 1770249600),
        ("claude-3-haiku-20240307", "Claude Haiku 3", 1709769600),
    ]
    assert models[0].capabilities == ("chat", "completion", "vision")
    assert models[1].capabilities == ("chat", "completion")
    assert (models[0].context_window, models[0].max_output_tokens) == (200000, 64000)
    assert models[0].raw["created_at"] == "2026-02-05T00:00:00Z"
    assert models[1].raw["lifecycle"] == "deprecated"
    json.dumps(models[0].raw)  # raw is stored in JSON fields: must serialise
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert usage_today(provider)["requests"] == 1


def test_provider_test_maps_anthropic_auth_error(httpserver, provider):
    httpserver.expect_request("/v1/models").respond_with_json(
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        },
        status=401,
    )

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == (
        "error",
        "auth",
    )
    assert "invalid x-api-key" in tested.last_health_error


def test_validate_config_suggests_dropping_v1_from_base_url():
    report = AnthropicConnector.validate_config(
        {
            "kind": "anthropic",
            "api_key": KEY,
            "base_url": "https://api.anthropic.com/v1",
            "default_model": "claude-opus-4-6",
        }
    )

    assert report.ok
    assert report.suggestions == [
        "The SDK adds /v1 itself: use the bare host, e.g. https://api.anthropic.com"
    ]


def test_calls_share_one_client_per_configuration(
    httpserver, make_provider, monkeypatch, settings
):
    """A client (TLS context, transport, open connections) is built once per
    provider configuration and process, not per call; a new key, or a new SSRF
    allow-list, gets a new one."""
    import apps.providers.connectors.anthropic as module
    from apps.providers.services import provider_update

    built: list[object] = []
    real = module.guarded_client

    def counting(**kwargs):  # type: ignore[no-untyped-def]
        built.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(module, "guarded_client", counting)
    key = f"{KEY}-{os.urandom(4).hex()}"  # a configuration no other test used
    provider = make_provider(
        kind="anthropic",
        base_url=httpserver.url_for("/").rstrip("/"),
        api_key=key,
        default_model="claude-opus-4-6",
    )
    httpserver.expect_request("/v1/messages", method="POST").respond_with_json(MESSAGE)

    def call() -> None:
        ask(provider)

    for _ in range(3):
        call()
    assert len(built) == 1
    with schema_context("alpha"):
        provider = provider_update(provider=provider, actor="t", api_key=f"{key}-new")
    call()
    settings.SSRF_ALLOW_LIST = [*settings.SSRF_ALLOW_LIST, "10.9.8.7/32"]
    call()

    assert len(built) == 3
    assert len(httpserver.log) == 5
    assert httpserver.log[3][0].headers["Authorization"] == f"Bearer {key}-new"


# The SDK's per-attempt headers (retry count, timeouts) and the body's length.
PER_ATTEMPT = {
    "x-stainless-retry-count",
    "x-stainless-read-timeout",
    "x-stainless-timeout",
    "content-length",
}


@pytest.mark.parametrize("base", ["", "/anthropic", "/anthropic/"])
def test_the_serving_call_sends_what_the_sdks_own_create_sends(
    httpserver, make_provider, base
):
    """The messages call is one POST on the SDK client's own pool: the same URL
    (base URLs with a path too), headers (key, API version, user agent, the SDK's
    platform headers) and body as the SDK's typed `messages.create` with the same
    arguments; only the SDK's per-attempt headers are left out."""
    provider = make_provider(
        kind="anthropic",
        base_url=httpserver.url_for(base) if base else httpserver.url_for("/")[:-1],
        api_key=KEY,
        default_model="claude-opus-4-6",
    )
    path = base.rstrip("/") + "/v1/messages"
    httpserver.expect_request(path, method="POST").respond_with_json(MESSAGE)
    messages = [{"role": "user", "content": "Bonjour, ça va ?"}]

    def ours(c: AnthropicConnector):  # type: ignore[no-untyped-def]
        c.invoke(
            InvokeRequest(
                messages=[{"role": "system", "content": "Be brief."}, *messages],
                parameters={"max_tokens": 64, "stop": ["###"], "metadata": {"u": 1}},
            )
        )
        c._client().messages.create(
            model="claude-opus-4-6",
            max_tokens=64,
            messages=messages,  # type: ignore[arg-type]
            system="Be brief.",
            stop_sequences=["###"],
            metadata={"u": 1},  # type: ignore[typeddict-unknown-key]
        )

    call_provider(provider, ours)

    [(direct, _), (typed, _)] = httpserver.log
    assert (direct.method, direct.full_path) == (typed.method, typed.full_path)
    assert direct.path == path
    assert json.loads(direct.get_data()) == json.loads(typed.get_data())
    mine = {k.lower(): v for k, v in direct.headers.items()}
    sdk = {k.lower(): v for k, v in typed.headers.items()}
    assert {k: v for k, v in sdk.items() if k not in PER_ATTEMPT} == {
        k: v for k, v in mine.items() if k not in PER_ATTEMPT
    }
    assert mine["authorization"] == f"Bearer {KEY}"
    assert mine["anthropic-version"] and mine["user-agent"].startswith("Anthropic/")


def test_a_host_with_an_underscore_gets_the_sdks_tls_name():
    """TLS host names have no "_": the SDK sends (and checks) the name with "-"
    instead, and so does the serving call."""
    from anthropic._models import FinalRequestOptions

    from apps.providers.connectors.base import ProviderSettings

    connector = AnthropicConnector(
        ProviderSettings(kind="anthropic", base_url="https://my_gw.corp.example")
    )
    clients = connector._build()
    theirs = clients.sdk._build_request(
        FinalRequestOptions.construct(method="post", url="/v1/messages", json_data={})
    )

    assert clients.messages.extensions["sni_hostname"] == "my-gw.corp.example"
    assert theirs.extensions["sni_hostname"] == "my-gw.corp.example"
    assert str(clients.messages.url) == str(theirs.url)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "message", "content": "Bonjour"},
        {"content": [{"type": "text"}]},
        {"content": [{"type": "text", "text": {"not": "text"}}]},
        {"content": [], "usage": {"input_tokens": "many"}},
        ["not", "a", "message"],
        {"content": [{"type": "text", "text": "hi"}], "usage": float("nan")},
        {"content": [], "usage": {"input_tokens": -3}},
        {"content": [], "usage": {"output_tokens": "12"}},
        {"content": [], "usage": {"output_tokens": True}},
    ],
)
def test_an_answer_that_is_not_a_message_is_a_provider_error(
    httpserver, provider, body
):
    from apps.providers.errors import ProviderError

    httpserver.expect_request("/v1/messages", method="POST").respond_with_data(
        json.dumps(body), content_type="application/json"
    )
    with pytest.raises(ProviderError, match="malformed response") as caught:
        ask(provider, attempts=1)
    assert caught.value.code == "provider_error"


@pytest.mark.parametrize(
    "answer",
    [
        '{"content": [], "usage": {"input_tokens": 1e400}}',
        '{"content": [{"type": "text", "text": "hi"}], "stop_sequence": -1e400}',
    ],
)
def test_a_number_beyond_a_floats_range_is_a_provider_error_not_a_crash(
    httpserver, provider, answer
):
    """1e400 parses to infinity, which no counter holds and JSON cannot carry (the
    answer is kept in `raw` and logged), wherever it is in the answer."""
    from apps.providers.errors import ProviderError

    httpserver.expect_request("/v1/messages", method="POST").respond_with_data(
        answer, content_type="application/json"
    )
    with pytest.raises(ProviderError, match="malformed response"):
        ask(provider, attempts=1)


def test_tool_use_blocks_stay_in_raw_and_out_of_the_text(httpserver, provider):
    answer = {
        **MESSAGE,
        "content": [
            {"type": "text", "text": "Looking it up."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}},
        ],
        "stop_reason": "tool_use",
    }
    httpserver.expect_request("/v1/messages", method="POST").respond_with_json(answer)

    result = ask(provider)

    assert (result.output, result.finish_reason) == ("Looking it up.", "tool_use")
    assert result.raw == answer


def test_an_error_answer_keeps_anthropics_message_and_retry_after(httpserver, provider):
    from apps.providers.errors import ProviderError

    httpserver.expect_request("/v1/messages", method="POST").respond_with_json(
        {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "slow down, please"},
        },
        status=429,
        headers={"retry-after": "7"},
    )
    with pytest.raises(ProviderError) as caught:
        ask(provider, attempts=1)

    assert caught.value.code == "rate_limited"
    assert "slow down, please" in str(caught.value)
    assert caught.value.retry_after == 7


def test_a_key_http_cannot_carry_is_a_provider_error_not_a_crash(
    httpserver, make_provider
):
    from apps.providers.errors import ProviderError

    provider = make_provider(
        kind="anthropic",
        base_url=httpserver.url_for("/").rstrip("/"),
        api_key="sk-ant-clé-0123456789",
        default_model="claude-opus-4-6",
    )
    with pytest.raises(ProviderError) as caught:
        ask(provider, attempts=1)
    assert caught.value.code == "bad_request"
    assert httpserver.log == []  # refused before anything was sent
    # The SDK's own calls send that key as UTF-8: the server's answer decides
    httpserver.expect_request("/v1/models").respond_with_json(
        {"type": "error", "error": {"type": "authentication_error", "message": "no"}},
        status=401,
    )
    with pytest.raises(ProviderError) as listing:
        call_provider(provider, lambda c: c.list_models(), attempts=1)
    assert listing.value.code == "auth"
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("key", ["sk-ant-line\nbreak", "sk-ant-trailing "])
def test_a_key_with_a_line_break_or_edge_space_is_refused_not_retried(
    httpserver, make_provider, key
):
    """httpx refuses such a header value locally: `bad_request` (not retried, not a
    provider outage), and nothing is sent."""
    from apps.providers.errors import ProviderError

    provider = make_provider(
        kind="anthropic",
        base_url=httpserver.url_for("/").rstrip("/"),
        api_key=key,
        default_model="claude-opus-4-6",
    )
    with pytest.raises(ProviderError) as caught:
        ask(provider)
    assert caught.value.code == "bad_request"
    assert httpserver.log == []


@pytest.mark.parametrize("max_tokens", ["many", None, [64]])
def test_a_max_tokens_the_api_refuses_is_its_bad_request_not_a_crash(
    httpserver, provider, max_tokens
):
    """Sent on as given; the API's 400 names it."""
    from apps.providers.errors import ProviderError

    httpserver.expect_request("/v1/messages", method="POST").respond_with_json(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "max_tokens: Input should be a valid integer",
            },
        },
        status=400,
    )
    with pytest.raises(ProviderError) as caught:
        call_provider(
            provider,
            lambda c: c.invoke(
                InvokeRequest(
                    messages=[{"role": "user", "content": "?"}],
                    parameters={"max_tokens": max_tokens},
                )
            ),
            attempts=1,
        )

    assert caught.value.code == "bad_request"
    assert "max_tokens" in str(caught.value)
    [(request, _)] = httpserver.log
    assert json.loads(request.get_data())["max_tokens"] == max_tokens
