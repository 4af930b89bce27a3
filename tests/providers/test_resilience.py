"""The protections around every provider call (apps.providers.resilience), with an
OpenAI-speaking local server as the provider."""

from __future__ import annotations

import re
import socket
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.providers.connectors import connector_class
from apps.providers.connectors.base import InvokeRequest
from apps.providers.errors import ProviderError
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider
from apps.providers.services import provider_test

KEY = "sk-resilience-secret-0123456789"
CHAT = InvokeRequest(model="gpt-4.1", messages=[{"role": "user", "content": "Hi"}])
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}

pytestmark = pytest.mark.usefixtures("alpha")


def chat(provider: ProviderConfig):  # type: ignore[no-untyped-def]
    return call_provider(provider, lambda c: c.invoke(CHAT))


@pytest.fixture
def openai_provider(httpserver, make_provider):  # type: ignore[no-untyped-def]
    def make(**fields):  # type: ignore[no-untyped-def]
        return make_provider(
            kind="openai", base_url=httpserver.url_for("/v1"), api_key=KEY, **fields
        )

    return make


def test_breaker_opens_after_threshold_failures_and_refuses_without_a_request(
    httpserver, openai_provider, usage_today, settings
):
    settings.PROVIDER_BREAKER_THRESHOLD = 3
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "overloaded", "type": "server_error"}}, status=503
    )
    provider = openai_provider(max_retries=0)

    for _ in range(3):
        with pytest.raises(ProviderError, match="overloaded"):
            chat(provider)
    with pytest.raises(ProviderError, match="circuit open") as caught:
        chat(provider)

    assert caught.value.code == "unavailable"
    assert 0 < caught.value.retry_after <= settings.PROVIDER_BREAKER_COOLDOWN
    assert len(httpserver.log) == 3
    provider.refresh_from_db()
    assert provider.consecutive_failures == 3
    assert provider.circuit_open_until > timezone.now()
    assert usage_today(provider) == {
        "requests": 3,
        "errors": 3,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }


def test_breaker_closes_on_success_after_cooldown(
    httpserver, openai_provider, settings
):
    settings.PROVIDER_BREAKER_THRESHOLD = 1
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "down"}}, status=500
    )
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(
        COMPLETION
    )
    provider = openai_provider(max_retries=0)
    with pytest.raises(ProviderError):
        chat(provider)
    ProviderConfig.objects.filter(pk=provider.pk).update(
        circuit_open_until=timezone.now()  # the cooldown has passed
    )

    assert chat(provider).output == "Hello"

    provider.refresh_from_db()
    assert (provider.consecutive_failures, provider.circuit_open_until) == (0, None)


def test_rate_limit_refuses_the_call_over_the_limit_without_a_request(
    httpserver, openai_provider, usage_today
):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(COMPLETION)
    provider = openai_provider(rate_limit_per_minute=2)
    if timezone.now().second >= 58:  # keep all three calls in one minute window
        time.sleep(3)

    chat(provider)
    chat(provider)
    with pytest.raises(ProviderError, match="limit of 2 requests per minute") as caught:
        chat(provider)

    assert caught.value.code == "rate_limited"
    assert 0 < caught.value.retry_after <= 60
    assert len(httpserver.log) == 2
    assert usage_today(provider)["requests"] == 2


def test_monthly_token_budget_refuses_once_spent(
    httpserver, openai_provider, usage_today
):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(COMPLETION)
    provider = openai_provider(monthly_token_budget=30)

    chat(provider)  # 20 tokens
    chat(provider)  # 40 tokens: over budget from now on
    with pytest.raises(ProviderError, match="40 of 30 tokens used") as caught:
        chat(provider)

    assert caught.value.code == "quota_exceeded"
    assert len(httpserver.log) == 2
    assert usage_today(provider) == {
        "requests": 2,
        "errors": 0,
        "tokens_in": 24,
        "tokens_out": 16,
        "cost": Decimal("0"),
    }


def test_monthly_cost_budget_refuses_once_spent(httpserver, openai_provider):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(COMPLETION)
    # 12 * 500 / 1000 + 8 * 1000 / 1000 = 14.00 per call
    provider = openai_provider(
        monthly_cost_budget=Decimal("10"),
        price_per_1k_input=Decimal("500"),
        price_per_1k_output=Decimal("1000"),
    )

    chat(provider)
    with pytest.raises(ProviderError, match=r"14\.00 of 10 spent") as caught:
        chat(provider)

    assert caught.value.code == "quota_exceeded"
    assert len(httpserver.log) == 1


def test_disabled_provider_is_refused_without_a_request(
    httpserver, openai_provider, usage_today
):
    provider = openai_provider(enabled=False)

    with pytest.raises(ProviderError) as caught:
        chat(provider)

    assert (caught.value.code, caught.value.status_code) == ("disabled", 409)
    assert httpserver.log == []
    assert usage_today(provider) == {}


def test_error_echoing_the_api_key_comes_back_scrubbed(httpserver, openai_provider):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {
            "error": {
                "message": f"Incorrect API key provided: {KEY}.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        status=401,
    )
    provider = openai_provider()

    with pytest.raises(ProviderError) as caught:
        chat(provider)

    error = caught.value
    assert error.code == "auth"
    assert error.detail == "Incorrect API key provided: ••••."
    assert KEY not in error.message
    assert KEY not in str(error)
    assert "Incorrect API key provided: ••••." in error.message


def test_provider_test_stores_the_scrubbed_error(httpserver, openai_provider):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"error": {"message": f"key {KEY} revoked"}}, status=403
    )
    provider = openai_provider()

    tested = provider_test(provider=provider)

    assert tested.last_health_error_code == "auth"
    assert "key •••• revoked" in tested.last_health_error
    assert KEY not in tested.last_health_error


# kind -> (path under the server, a request it can send, extra fields)
TARGETS = {
    "openai": ("/v1", CHAT, {}),
    "anthropic": (
        "",
        InvokeRequest(model="claude-opus-4-6", messages=CHAT.messages),
        {},
    ),
    "huggingface": ("/hf", InvokeRequest(inputs="x"), {"default_model": "acme/m"}),
    "custom_http": ("/predict", InvokeRequest(inputs="x"), {}),
}


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return port


@pytest.mark.parametrize("kind", list(TARGETS))
def test_closed_port_is_unavailable_quickly(make_provider, usage_today, kind):
    path, request, fields = TARGETS[kind]
    provider = make_provider(
        kind=kind,
        base_url=f"http://127.0.0.1:{closed_port()}{path}",
        api_key=KEY,
        **fields,
    )
    connector_class(kind)  # imported outside the clock: the anthropic SDK takes ~1 s

    started = time.monotonic()
    with pytest.raises(ProviderError, match="connection failed") as caught:
        call_provider(provider, lambda c: c.invoke(request))
    elapsed = time.monotonic() - started

    assert (caught.value.code, caught.value.status_code) == ("unavailable", 503)
    assert elapsed < 1.0
    assert usage_today(provider)["errors"] == 3  # the first try + max_retries=2


def test_provider_test_on_a_closed_port_stores_unavailable(make_provider):
    provider = make_provider(
        kind="openai", base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key=KEY
    )

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == (
        "error",
        "unavailable",
    )


@pytest.mark.parametrize("kind", list(TARGETS))
def test_address_outside_the_allow_list_is_refused_at_connect_time(
    make_provider, usage_today, kind
):
    path, request, fields = TARGETS[kind]
    # Saved while allowed, then the guard refuses to connect (as after DNS rebinding).
    provider = make_provider(
        kind=kind, base_url=f"http://127.0.0.1:9{path}", api_key=KEY, **fields
    )
    ProviderConfig.objects.filter(pk=provider.pk).update(
        base_url=f"http://127.0.0.2:9{path}"
    )
    provider.refresh_from_db()

    with pytest.raises(
        ProviderError, match=re.escape("resolves to 127.0.0.2, not a public address")
    ) as caught:
        call_provider(provider, lambda c: c.invoke(request))

    assert caught.value.code == "unsafe_url"
    assert usage_today(provider)["errors"] == 1  # not retried


def test_huggingface_hub_url_outside_the_allow_list_is_refused(make_provider):
    provider = make_provider(
        kind="huggingface",
        base_url="http://127.0.0.1:9/hf",
        api_key=KEY,
        default_model="acme/m",
        settings={"hub_url": "http://169.254.169.254"},
    )

    tested = provider_test(provider=provider)

    assert tested.last_health_error_code == "unsafe_url"
    assert "169.254.169.254" in tested.last_health_error
