"""HuggingFace: Inference Providers (hf-inference) for calls, the Hub API for
discovery and the key check. Plain HTTP: the official client brings its own stack."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

import httpx2

from apps.core.ssrf import UnsafeURLError, check_url
from apps.providers.connectors._sdk import (
    error_for_response,
    json_body,
    map_http_error,
)
from apps.providers.connectors.base import (
    Connector,
    DiscoveredModel,
    InvokeRequest,
    InvokeResult,
    ValidationReport,
)
from apps.providers.errors import ProviderError
from apps.providers.http import client_key, guarded_client, kept_client

DEFAULT_HUB_URL = "https://huggingface.co"
DEFAULT_LIST_LIMIT = 100
# owner/name, each part as the Hub allows it; never "..", so it is safe in a URL path.
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
CAPABILITIES = {
    "text-generation": ("chat", "completion"),
    "text2text-generation": ("completion",),
    "feature-extraction": ("embedding",),
    "sentence-similarity": ("embedding",),
    "text-classification": ("classification",),
    "token-classification": ("classification",),
    "zero-shot-classification": ("classification",),
    "image-classification": ("vision", "classification"),
    "image-to-text": ("vision",),
    "image-text-to-text": ("vision", "chat"),
    "object-detection": ("vision",),
    "automatic-speech-recognition": ("audio",),
    "audio-classification": ("audio", "classification"),
    "text-to-speech": ("audio",),
    "tabular-classification": ("classification",),
    "tabular-regression": ("regression",),
}


def is_repo_id(value: str) -> bool:
    return bool(REPO_ID.match(value)) and ".." not in value


class HuggingFaceConnector(Connector):
    kind: ClassVar[str] = "huggingface"
    default_base_url: ClassVar[str] = "https://router.huggingface.co/hf-inference"

    @property
    def hub_url(self) -> str:
        return str(self.config.options.get("hub_url") or DEFAULT_HUB_URL).rstrip("/")

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        client = kept_client(client_key(self.config), self._build)
        try:
            response = client.request(method, url, params=params, json=json)
        except httpx2.HTTPError as exc:
            raise map_http_error(exc) from None
        if response.status_code >= 400:
            raise _error(response)
        if not 200 <= response.status_code < 300:
            raise ProviderError(
                "provider_error", f"unexpected HTTP {response.status_code}"
            )
        return json_body(response)

    def _build(self) -> httpx2.Client:
        headers = {"Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return guarded_client(timeout=self.config.timeout, headers=headers)

    @classmethod
    def validate_config(cls, data: dict[str, Any]) -> ValidationReport:
        report = super().validate_config(data)
        # Required here, so the base class's "no default model" warning is moot.
        report.warnings = [w for w in report.warnings if "default model" not in w]
        model = str(data.get("default_model") or "")
        if not model:
            report.error(
                "default_model", "HuggingFace needs a model repo id (owner/name)."
            )
        elif not is_repo_id(model):
            report.error(
                "default_model",
                f"'{model}' is not a repo id of the form owner/name.",
            )
        options = data.get("settings") or {}
        if not isinstance(options, dict):
            report.error("settings", "Settings must be a JSON object.")
            return report
        if not options.get("task"):
            report.warnings.append(
                "No task set (settings.task, e.g. text-classification): "
                "outputs cannot be checked against the model's pipeline."
            )
        if options.get("hub_url"):
            try:
                check_url(str(options["hub_url"]), resolve=False)
            except UnsafeURLError as exc:
                report.error("settings.hub_url", exc.message)
        return report

    def health_check(self) -> None:
        body = self._send("GET", f"{self.hub_url}/api/whoami-v2")
        if not isinstance(body, dict):
            raise ProviderError("provider_error", "malformed response")

    def list_models(self) -> list[DiscoveredModel]:
        options = self.config.options
        params: dict[str, Any] = {
            key: options[key]
            for key in ("search", "author", "pipeline_tag")
            if options.get(key)
        }
        params["limit"] = int(options.get("limit") or DEFAULT_LIST_LIMIT)
        body = self._send("GET", f"{self.hub_url}/api/models", params=params)
        if not isinstance(body, list):
            raise ProviderError("provider_error", "malformed response")
        models = []
        for item in body:
            if not isinstance(item, dict) or not item.get("id"):
                raise ProviderError("provider_error", "malformed response")
            tag = item.get("pipeline_tag") or ""
            models.append(
                DiscoveredModel(
                    id=item["id"],
                    name=item["id"],
                    owned_by=item.get("author") or item["id"].partition("/")[0],
                    created=_epoch(item.get("createdAt")),
                    capabilities=CAPABILITIES.get(tag, (tag,) if tag else ()),
                    raw=item,
                )
            )
        return models

    def invoke(self, request: InvokeRequest) -> InvokeResult:
        model = self.model_for(request)
        if not is_repo_id(model):
            raise ProviderError("bad_request", f"'{model}' is not a repo id")
        inputs = request.inputs
        if inputs is None and request.messages:
            # hf-inference tasks take one input, not a conversation: the last user turn.
            user = [m for m in request.messages if m.get("role") == "user"]
            if not user:
                raise ProviderError("bad_request", "no user message to send")
            inputs = user[-1].get("content")
        if inputs is None:
            raise ProviderError("bad_request", "no inputs given")
        body = self._send(
            "POST",
            f"{self.config.base_url.rstrip('/')}/models/{model}",
            json={"inputs": inputs, "parameters": dict(request.parameters)},
        )
        return InvokeResult(
            output=_output(body),
            model=model,
            raw=body if isinstance(body, dict) else {"body": body},
        )


def _error(response: httpx2.Response) -> ProviderError:
    error = error_for_response(response)
    if response.status_code == 503:
        # The model is loading: the Hub says how long it expects that to take.
        try:
            body = response.json()
        except ValueError:
            body = None
        estimate = body.get("estimated_time") if isinstance(body, dict) else None
        if isinstance(estimate, int | float) and error.retry_after is None:
            error.retry_after = max(0.0, float(estimate))
    return error


def _output(body: Any) -> Any:
    """Text tasks answer [{"generated_text": ...}]: unwrap that one string."""
    if (
        isinstance(body, list)
        and len(body) == 1
        and isinstance(body[0], dict)
        and set(body[0]) == {"generated_text"}
    ):
        return body[0]["generated_text"]
    return body


def _epoch(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None
