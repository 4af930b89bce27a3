"""Anthropic's Messages API through the official SDK's client: its own calls for
the catalogue, one POST on its connection pool for the serving path's messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import anthropic

from apps.providers.connectors._sdk import map_sdk_error, post_json, token_count
from apps.providers.connectors.base import (
    Connector,
    DiscoveredModel,
    InvokeRequest,
    InvokeResult,
    ValidationReport,
)
from apps.providers.errors import ProviderError
from apps.providers.http import (
    DirectPost,
    GuardedTransport,
    client_key,
    guarded_client,
    kept_client,
)

T = TypeVar("T")
DEFAULT_MAX_TOKENS = 1024
# Parameters the Messages API takes as they are, passed on into the body (it has no
# temperature).
MESSAGE_PARAMETERS = {
    "stop_sequences",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "service_tier",
}


@dataclass(frozen=True)
class _Clients:
    sdk: anthropic.Anthropic
    messages: DirectPost  # on the SDK client's own transport


class AnthropicConnector(Connector):
    kind: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"

    def _client(self) -> anthropic.Anthropic:
        return self._clients().sdk

    def _clients(self) -> _Clients:
        """The SDK client and its messages POST, kept per provider configuration and
        process (apps.providers.http.kept_client): its connections serve the next
        call."""
        return kept_client(client_key(self.config), self._build)

    def _build(self) -> _Clients:
        config = self.config
        transport = GuardedTransport()
        http = guarded_client(timeout=config.timeout, transport=transport)
        sdk = anthropic.Anthropic(
            # Always explicit: without it the SDK reads env vars and profiles.
            api_key=config.api_key or "none",
            base_url=config.base_url,
            timeout=config.timeout,
            max_retries=0,  # retries, backoff and breaker: apps.providers.resilience
            http_client=http,
        )
        return _Clients(
            sdk=sdk,
            messages=DirectPost.on_sdk_client(
                sdk, http, transport, "v1/messages", sni_for_underscores=True
            ),
        )

    def _call(self, fn: Callable[[anthropic.Anthropic], T]) -> T:
        try:
            return fn(self._client())
        # ValueError: the SDKs let a body that is not JSON escape as JSONDecodeError.
        except (anthropic.AnthropicError, ValueError) as exc:
            raise map_sdk_error(exc, anthropic) from None

    @classmethod
    def validate_config(cls, data: dict[str, Any]) -> ValidationReport:
        report = super().validate_config(data)
        base_url = str(data.get("base_url") or "").rstrip("/")
        if base_url.endswith("/v1"):
            report.suggestions.append(
                "The SDK adds /v1 itself: use the bare host, "
                "e.g. https://api.anthropic.com"
            )
        return report

    def list_models(self) -> list[DiscoveredModel]:
        def fetch(client: anthropic.Anthropic) -> list[DiscoveredModel]:
            return [
                DiscoveredModel(
                    id=m.id,
                    name=getattr(m, "display_name", None) or m.id,
                    owned_by="anthropic",
                    created=_epoch(getattr(m, "created_at", None)),
                    capabilities=_capabilities(m),
                    context_window=getattr(m, "max_input_tokens", None),
                    max_output_tokens=getattr(m, "max_tokens", None),
                    # JSON mode: created_at and friends are datetimes in Python mode.
                    raw=m.model_dump(mode="json"),
                )
                for m in client.models.list()
            ]

        return self._call(fetch)

    def invoke(self, request: InvokeRequest) -> InvokeResult:
        model = self.model_for(request)
        params = {
            k: v for k, v in request.parameters.items() if k in MESSAGE_PARAMETERS
        }
        if "stop" in request.parameters and "stop_sequences" not in params:
            stop = request.parameters["stop"]
            params["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        system = [
            _text_of(m.get("content"))
            for m in request.messages
            if m.get("role") == "system"
        ]
        if system:
            params["system"] = "\n\n".join(system)
        messages = [m for m in request.messages if m.get("role") != "system"]
        # As given, like every other parameter: the API names what it refuses (a
        # 400, bad_request), where int() here raised out of the call (a 500).
        max_tokens = request.parameters.get("max_tokens", DEFAULT_MAX_TOKENS)

        body = {
            "max_tokens": max_tokens,
            "messages": messages,
            "model": model,
            **params,
        }
        # One POST of the body on the SDK client's own pool, with its headers and
        # timeout, as the OpenAI connector sends its chat call: the SDK's typed
        # create (its parameter transforms and response model) costs more than the
        # round trip to a nearby server. The answer is read from its JSON.
        message = post_json(self._clients().messages, body)
        try:
            return _message_result(message, model)
        except ValueError:
            raise ProviderError("provider_error", "malformed response") from None


def _message_result(message: Any, model: str) -> InvokeResult:
    """An InvokeResult from a Messages API answer; ValueError when it is not one."""
    try:
        blocks = message["content"]
        texts = [
            block["text"]
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "text"
        ]
        usage = message.get("usage") or {}
        tokens_in = token_count(usage.get("input_tokens"))
        tokens_out = token_count(usage.get("output_tokens"))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError("not a message") from exc
    if not isinstance(blocks, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("not a message")
    return InvokeResult(
        output="".join(texts),
        model=str(message.get("model") or model),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        finish_reason=str(message.get("stop_reason") or ""),
        raw=message,
    )


def _text_of(content: Any) -> str:
    """A message's content as text: a string, or the text of its text blocks."""
    if isinstance(content, list):
        return "".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return "" if content is None else str(content)


def _epoch(value: Any) -> int | None:
    return int(value.timestamp()) if isinstance(value, datetime) else None


def _capabilities(model: Any) -> tuple[str, ...]:
    found = ["chat", "completion"]
    caps = getattr(model, "capabilities", None)
    image = getattr(caps, "image_input", None) if caps is not None else None
    if image is not None and image.supported:
        found.append("vision")
    return tuple(found)
