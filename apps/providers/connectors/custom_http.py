"""Any JSON-over-HTTP prediction endpoint: a request template in, a path to the
answer out. One endpoint serves one model."""

from __future__ import annotations

import json
import re
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
from apps.providers.errors import ProviderError, error_for_status
from apps.providers.http import client_key, guarded_client, kept_client

DEFAULT_TEMPLATE: dict[str, Any] = {"inputs": "{{inputs}}"}
PLACEHOLDERS = ("{{inputs}}", "{{model}}", "{{messages}}", "{{parameters}}")
# Dot path of object keys and list indexes: data.0.prediction
RESPONSE_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the HTTP client must own: overriding them breaks or smuggles requests.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class CustomHTTPConnector(Connector):
    kind: ClassVar[str] = "custom_http"
    default_base_url: ClassVar[str] = ""  # the endpoint itself: no sensible default
    requires_api_key: ClassVar[bool] = False

    @property
    def options(self) -> dict[str, Any]:
        return self.config.options

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        for name, value in (self.options.get("headers") or {}).items():
            # validate_config refuses these; skip them should one be stored anyway.
            if str(name).lower() not in RESERVED_HEADERS:
                headers[str(name)] = str(value)
        if self.config.api_key:
            scheme = self.options.get("auth_scheme", "Bearer")
            header = self.options.get("auth_header") or "Authorization"
            key = self.config.api_key
            headers[header] = f"{scheme} {key}" if scheme else key
        return headers

    def _send(self, method: str, url: str, *, body: Any = None) -> httpx2.Response:
        client = kept_client(
            client_key(self.config),
            lambda: guarded_client(
                timeout=self.config.timeout, headers=self._headers()
            ),
        )
        try:
            if method == "POST":
                return client.post(url, json=body)
            return client.get(url)
        except httpx2.HTTPError as exc:
            raise map_http_error(exc) from None

    @classmethod
    def validate_config(cls, data: dict[str, Any]) -> ValidationReport:
        report = super().validate_config(data)
        if not data.get("base_url"):
            report.error("base_url", "custom_http needs the endpoint's full URL.")
        options = data.get("settings") or {}
        if not isinstance(options, dict):
            report.error("settings", "Settings must be a JSON object.")
            return report
        template = options.get("request_template", DEFAULT_TEMPLATE)
        try:
            json.dumps(template, allow_nan=False)
        except (TypeError, ValueError) as exc:
            report.error("settings.request_template", f"Not a JSON value: {exc}.")
        else:
            found = set(_placeholders(template))
            if not found & {"{{inputs}}", "{{messages}}"}:
                report.error(
                    "settings.request_template",
                    'The template must contain "{{inputs}}" or "{{messages}}".',
                )
        path = options.get("response_path", "")
        if not isinstance(path, str) or (path and not RESPONSE_PATH.match(path)):
            report.error(
                "settings.response_path",
                "Use a dot path of keys and list indexes, e.g. data.0.prediction.",
            )
        headers = options.get("headers") or {}
        if not isinstance(headers, dict):
            report.error("settings.headers", "Headers must be a JSON object.")
            headers = {}
        for name, value in headers.items():
            if not HEADER_NAME.match(str(name)):
                report.error("settings.headers", f"'{name}' is not a header name.")
            elif str(name).lower() in RESERVED_HEADERS:
                report.error("settings.headers", f"'{name}' is set by ModelHub itself.")
            elif not isinstance(value, str) or "\n" in value or "\r" in value:
                report.error(
                    "settings.headers", f"'{name}' needs a one-line text value."
                )
        auth_header = options.get("auth_header", "Authorization")
        if not isinstance(auth_header, str) or not HEADER_NAME.match(auth_header):
            report.error("settings.auth_header", "Not a valid header name.")
        elif auth_header.lower() in RESERVED_HEADERS:
            report.error("settings.auth_header", f"'{auth_header}' is reserved.")
        if not isinstance(options.get("auth_scheme", "Bearer"), str):
            report.error("settings.auth_scheme", "Must be text (empty for none).")
        if options.get("health_url"):
            try:
                check_url(str(options["health_url"]), resolve=False)
            except UnsafeURLError as exc:
                report.error("settings.health_url", exc.message)
        return report

    def health_check(self) -> None:
        """Reachable means any answer but a server error or a refused credential."""
        url = self.options.get("health_url") or self.config.base_url
        response = self._send("GET", url)
        if response.status_code in (401, 403) or response.status_code >= 500:
            raise error_for_response(response)

    def list_models(self) -> list[DiscoveredModel]:
        model = self.config.default_model or "default"
        return [DiscoveredModel(id=model, name=model, owned_by="custom")]

    def invoke(self, request: InvokeRequest) -> InvokeResult:
        model = request.model or self.config.default_model
        values = {
            "{{inputs}}": request.inputs,
            "{{model}}": model,
            "{{messages}}": request.messages,
            "{{parameters}}": request.parameters,
        }
        template = self.options.get("request_template", DEFAULT_TEMPLATE)
        response = self._send(
            "POST", self.config.base_url, body=_render(template, values)
        )
        if response.status_code >= 400:
            raise error_for_response(response)
        if not 200 <= response.status_code < 300:
            raise error_for_status(
                response.status_code, f"unexpected HTTP {response.status_code}"
            )
        body = json_body(response)
        path = str(self.options.get("response_path") or "")
        return InvokeResult(
            output=_extract(body, path),
            model=model,
            raw=body if isinstance(body, dict) else {"body": body},
        )


def _render(template: Any, values: dict[str, Any]) -> Any:
    """Replace placeholder strings by their values (as JSON values, at any depth)."""
    if isinstance(template, str):
        return values.get(template, template)
    if isinstance(template, list):
        return [_render(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _render(item, values) for key, item in template.items()}
    return template


def _placeholders(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template] if template in PLACEHOLDERS else []
    if isinstance(template, dict):
        template = list(template.values())
    if isinstance(template, list):
        return [p for item in template for p in _placeholders(item)]
    return []


def _extract(body: Any, path: str) -> Any:
    """Follow a dot path of object keys and list indexes; a miss names the path."""
    current = body
    for part in path.split(".") if path else ():
        if isinstance(current, dict) and part in current:
            current = current[part]
            continue
        if isinstance(current, list) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            if -len(current) <= index < len(current):
                current = current[index]
                continue
        raise ProviderError(
            "provider_error", f"response path '{path}' not found in the answer"
        )
    return current
