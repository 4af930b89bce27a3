"""Error mapping shared by the official SDKs (openai, anthropic): both raise
APIStatusError / APITimeoutError / APIConnectionError families."""

from __future__ import annotations

import json
from typing import Any

from apps.providers.errors import ProviderError, error_for_status, parse_retry_after
from apps.providers.http import UnsafeConnectionError


def _unsafe_cause(exc: BaseException) -> UnsafeConnectionError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UnsafeConnectionError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def map_sdk_error(exc: Exception, sdk: Any) -> ProviderError:
    """Translate an SDK exception into the taxonomy (never leaking the request)."""
    unsafe = _unsafe_cause(exc)
    if unsafe is not None:
        return ProviderError("unsafe_url", unsafe.error.message)
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError("timeout")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError("unavailable", "connection failed")
    if isinstance(exc, sdk.APIStatusError):
        response = exc.response
        return error_for_status(
            exc.status_code,
            _status_detail(exc),
            parse_retry_after(
                response.headers.get("retry-after") if response else None
            ),
        )
    if isinstance(
        exc, sdk.APIResponseValidationError | ValueError | json.JSONDecodeError
    ):
        return ProviderError("provider_error", "malformed response")
    if isinstance(exc, sdk.APIError):
        return ProviderError("provider_error", exc.__class__.__name__)
    raise exc


def _status_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return f"HTTP {exc.status_code}"
