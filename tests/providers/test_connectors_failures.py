"""Every connector, every way a provider fails on the wire, through call_provider:
the mapped error code, how many requests were made and what usage recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from werkzeug import Request, Response

from apps.providers.connectors import connector_class
from apps.providers.connectors.base import InvokeRequest
from apps.providers.errors import ProviderError
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider

KEY = "key-failures-0123456789"
CHAT = [{"role": "user", "content": "Hi"}]


@dataclass(frozen=True)
class Wire:
    """How one kind is configured, where it posts, and what its answers look like."""

    base: str
    path: str
    request: InvokeRequest
    ok_body: Any
    error_body: Callable[[str, str], Any]
    fields: dict[str, Any] = field(default_factory=dict)
    tokens: tuple[int, int] = (0, 0)


def openai_error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def plain_error(kind: str, message: str) -> dict[str, Any]:
    return {"error": message}


def completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


WIRES = {
    "openai": Wire(
        base="/v1",
        path="/v1/chat/completions",
        request=InvokeRequest(model="gpt-4.1", messages=CHAT),
        ok_body=completion("gpt-4.1"),
        error_body=openai_error,
        tokens=(5, 2),
    ),
    "google": Wire(
        base="/v1beta/openai/",
        path="/v1beta/openai/chat/completions",
        request=InvokeRequest(model="gemini-2.5-flash", messages=CHAT),
        ok_body=completion("gemini-2.5-flash"),
        error_body=openai_error,
        tokens=(5, 2),
    ),
    "anthropic": Wire(
        base="",
        path="/v1/messages",
        request=InvokeRequest(model="claude-opus-4-6", messages=CHAT),
        ok_body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-6",
            "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 3},
        },
        error_body=anthropic_error,
        tokens=(9, 3),
    ),
    "huggingface": Wire(
        base="/hf-inference",
        path="/hf-inference/models/acme/sentiment",
        request=InvokeRequest(inputs="great"),
        ok_body=[[{"label": "POSITIVE", "score": 0.99}]],
        error_body=plain_error,
        fields={"default_model": "acme/sentiment"},
    ),
    "custom_http": Wire(
        base="/predict",
        path="/predict",
        request=InvokeRequest(inputs=[1, 2]),
        ok_body={"prediction": 1},
        error_body=plain_error,
    ),
}
KINDS = list(WIRES)


class Script:
    """A handler answering with the next response of a script (the last repeats),
    noting when each request arrived. Thread-safe: the fake server is threaded."""

    def __init__(self, *responses: Callable[[], Response]) -> None:
        self.responses = responses
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.arrivals.append(time.monotonic())
            index = min(len(self.arrivals), len(self.responses)) - 1
        return self.responses[index]()


def json_response(
    body: Any, status: int = 200, **headers: str
) -> Callable[[], Response]:
    return lambda: Response(
        json.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown so that stalled handlers end with the test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(params=KINDS)
def wire(request: pytest.FixtureRequest) -> tuple[str, Wire]:
    return request.param, WIRES[request.param]


@pytest.fixture
def provider(httpserver, make_provider, wire) -> Callable[..., ProviderConfig]:  # type: ignore[no-untyped-def]
    kind, spec = wire
    connector_class(kind)  # import now, not inside a timed call (anthropic: ~1 s)

    def make(**fields: Any) -> ProviderConfig:
        base_url = (
            httpserver.url_for(spec.base)
            if spec.base
            else httpserver.url_for("/").rstrip("/")
        )
        return make_provider(
            kind=kind, base_url=base_url, api_key=KEY, **{**spec.fields, **fields}
        )

    return make


def invoke(provider: ProviderConfig, spec: Wire) -> Any:
    return call_provider(provider, lambda c: c.invoke(spec.request))


pytestmark = pytest.mark.usefixtures("alpha")


def test_401_is_auth_and_not_retried(httpserver, wire, provider, usage_today):
    _, spec = wire
    script = Script(
        json_response(spec.error_body("authentication_error", "bad key given"), 401)
    )
    httpserver.expect_request(spec.path, method="POST").respond_with_handler(script)
    config = provider(max_retries=2)

    with pytest.raises(ProviderError, match="bad key given") as caught:
        invoke(config, spec)

    assert (caught.value.code, caught.value.upstream_status) == ("auth", 401)
    assert len(script.arrivals) == 1
    assert usage_today(config) == {
        "requests": 1,
        "errors": 1,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }


def test_429_is_retried_after_retry_after_then_succeeds(
    httpserver, wire, provider, usage_today, settings
):
    _, spec = wire
    settings.PROVIDER_BACKOFF_MAX = 2.0  # let a 1 s Retry-After be honoured
    script = Script(
        json_response(
            spec.error_body("rate_limit_error", "slow down"),
            429,
            **{"Retry-After": "1"},
        ),
        json_response(spec.ok_body),
    )
    httpserver.expect_request(spec.path, method="POST").respond_with_handler(script)
    config = provider(
        max_retries=2, price_per_1k_input=Decimal("1"), price_per_1k_output=Decimal("2")
    )

    result = invoke(config, spec)

    assert (result.tokens_in, result.tokens_out) == spec.tokens
    assert len(script.arrivals) == 2
    assert 1.0 <= script.arrivals[1] - script.arrivals[0] < 1.5
    tokens_in, tokens_out = spec.tokens
    assert usage_today(config) == {
        "requests": 2,
        "errors": 1,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": (Decimal(tokens_in) + 2 * Decimal(tokens_out)) / 1000,
    }


def test_429_with_retry_after_beyond_backoff_max_fails_at_once(
    httpserver, wire, provider
):
    _, spec = wire
    script = Script(
        json_response(
            spec.error_body("rate_limit_error", "slow down"),
            429,
            **{"Retry-After": "30"},
        )
    )
    httpserver.expect_request(spec.path, method="POST").respond_with_handler(script)
    config = provider(max_retries=2)

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        invoke(config, spec)

    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", 30.0)
    assert len(script.arrivals) == 1
    assert time.monotonic() - started < 1.0


def test_500_is_retried_max_retries_then_unavailable(
    httpserver, wire, provider, usage_today
):
    _, spec = wire
    script = Script(json_response(spec.error_body("api_error", "boom"), 500))
    httpserver.expect_request(spec.path, method="POST").respond_with_handler(script)
    config = provider(max_retries=2)

    with pytest.raises(ProviderError, match="boom") as caught:
        invoke(config, spec)

    assert (caught.value.code, caught.value.upstream_status) == ("unavailable", 500)
    assert len(script.arrivals) == 3  # the first try and max_retries=2 retries
    assert usage_today(config) == {
        "requests": 3,
        "errors": 3,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }
    config.refresh_from_db()
    assert config.consecutive_failures == 1


def test_stalled_answer_times_out_quickly(
    httpserver, wire, provider, usage_today, release
):
    _, spec = wire

    def stall() -> Response:
        release.wait(5)
        return json_response(spec.ok_body)()

    script = Script(stall)
    httpserver.expect_request(spec.path, method="POST").respond_with_handler(script)
    config = provider(timeout_seconds=0.3, max_retries=1)

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        invoke(config, spec)
    elapsed = time.monotonic() - started

    assert caught.value.code == "timeout"
    assert 0.6 <= elapsed < 1.5  # two attempts of 0.3 s, tiny backoff
    assert len(script.arrivals) == 2
    assert usage_today(config) == {
        "requests": 2,
        "errors": 2,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }


def test_malformed_json_is_provider_error_and_not_retried(
    httpserver, wire, provider, usage_today
):
    _, spec = wire
    script = Script(
        lambda: Response('{"id": "x", "choices": [', content_type="application/json")
    )
    httpserver.expect_request(spec.path, method="POST").respond_with_handler(script)
    config = provider(max_retries=2)

    with pytest.raises(ProviderError, match="malformed response") as caught:
        invoke(config, spec)

    assert caught.value.code == "provider_error"
    assert len(script.arrivals) == 1
    assert usage_today(config) == {
        "requests": 1,
        "errors": 1,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }
