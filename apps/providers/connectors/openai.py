"""OpenAI, and any server speaking its API (vLLM, Ollama, LiteLLM...) via base_url."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import openai

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


@dataclass(frozen=True)
class _Clients:
    sdk: openai.OpenAI
    chat: DirectPost  # on the SDK client's own transport


CHAT_PARAMETERS = {
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "n",
}


class OpenAIConnector(Connector):
    kind: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    has_organization: ClassVar[bool] = True
    supports_fine_tune: ClassVar[bool] = True

    def _client(self) -> openai.OpenAI:
        return self._clients().sdk

    def _clients(self) -> _Clients:
        """The SDK client and its transport, kept per provider configuration and
        process (apps.providers.http.kept_client)."""
        return kept_client(client_key(self.config), self._build)

    def _build(self) -> _Clients:
        transport = GuardedTransport()
        http = guarded_client(timeout=self.config.timeout, transport=transport)
        sdk = openai.OpenAI(
            api_key=self.config.api_key or "none",
            organization=self.config.organization or None,
            project=self.config.project or None,
            base_url=self.config.base_url,
            timeout=self.config.timeout,
            max_retries=0,  # retries and breaker live in apps.providers.resilience
            http_client=http,
        )
        return _Clients(
            sdk=sdk,
            chat=DirectPost.on_sdk_client(sdk, http, transport, "chat/completions"),
        )

    def _call(self, fn: Callable[[openai.OpenAI], T]) -> T:
        client = self._client()
        try:
            return fn(client)
        # ValueError: the SDKs let a body that is not JSON escape as JSONDecodeError.
        except (openai.OpenAIError, ValueError) as exc:
            raise map_sdk_error(exc, openai) from None

    @classmethod
    def validate_config(cls, data: dict[str, Any]) -> ValidationReport:
        report = super().validate_config(data)
        base_url = str(data.get("base_url") or "")
        if (
            base_url
            and not base_url.rstrip("/").endswith("/v1")
            and "openai" in base_url
        ):
            report.suggestions.append(
                "OpenAI's API lives under /v1: try https://api.openai.com/v1"
            )
        return report

    def list_models(self) -> list[DiscoveredModel]:
        def fetch(client: openai.OpenAI) -> list[DiscoveredModel]:
            return [
                DiscoveredModel(
                    id=m.id,
                    name=m.id,
                    owned_by=getattr(m, "owned_by", "") or "",
                    created=getattr(m, "created", None),
                    capabilities=_capabilities(m.id),
                    raw=m.model_dump(),
                )
                for m in client.models.list()
            ]

        return self._call(fetch)

    def invoke(self, request: InvokeRequest) -> InvokeResult:
        model = self.model_for(request)
        params = {k: v for k, v in request.parameters.items() if k in CHAT_PARAMETERS}

        body = {"model": model, "messages": request.messages, **params}
        # The serving path's call goes out on the SDK client's own connection pool
        # (the guarded transport, its timeouts) with the SDK's headers, as one POST
        # of the body as it is: the SDK's per-request option models, header merging
        # and URL building cost more than the round trip to a nearby server (about
        # 1 ms per call, docs/performance.md). The answer is read from its JSON.
        completion = post_json(self._clients().chat, body)
        try:
            return _chat_result(completion, model)
        except ValueError:
            raise ProviderError("provider_error", "malformed response") from None

    def fine_tune_create(self, **kwargs: Any) -> dict[str, Any]:
        return self._call(lambda c: c.fine_tuning.jobs.create(**kwargs).model_dump())

    def fine_tune_status(self, job_id: str) -> dict[str, Any]:
        return self._call(lambda c: c.fine_tuning.jobs.retrieve(job_id).model_dump())

    def fine_tune_events(self, job_id: str) -> list[dict[str, Any]]:
        return self._call(
            lambda c: [e.model_dump() for e in c.fine_tuning.jobs.list_events(job_id)]
        )

    def fine_tune_cancel(self, job_id: str) -> dict[str, Any]:
        return self._call(lambda c: c.fine_tuning.jobs.cancel(job_id).model_dump())


def _chat_result(completion: Any, model: str) -> InvokeResult:
    """An InvokeResult from a chat.completion body; ValueError when it is not one."""
    try:
        choice = completion["choices"][0]
        content = choice["message"].get("content")
        usage = completion.get("usage") or {}
        tokens_in = token_count(usage.get("prompt_tokens"))
        tokens_out = token_count(usage.get("completion_tokens"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError("not a chat.completion") from exc
    if content is not None and not isinstance(content, str):
        raise ValueError("not a chat.completion")
    return InvokeResult(
        output=content,
        model=str(completion.get("model") or model),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        finish_reason=str(choice.get("finish_reason") or ""),
        raw=completion,
    )


def _capabilities(model_id: str) -> tuple[str, ...]:
    """OpenAI's catalogue carries no capability flags; the id is the only hint."""
    name = model_id.lower()
    if "embedding" in name:
        return ("embedding",)
    if name.startswith(("whisper", "tts")):
        return ("audio",)
    if name.startswith(("dall-e", "gpt-image")):
        return ("vision",)
    if "moderation" in name:
        return ("classification",)
    return ("chat", "completion")
