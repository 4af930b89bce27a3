"""Error mapping shared by the official SDKs (openai, anthropic): both raise
APIStatusError / APITimeoutError / APIConnectionError families. The plain-HTTP
connectors (huggingface, custom_http) share map_http_error / error_for_response, and
the SDK connectors' serving calls, POSTed on their client's pool, post_json."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import httpx2
import orjson

from apps.providers.errors import ProviderError, error_for_status, parse_retry_after
from apps.providers.http import UnsafeConnectionError

if TYPE_CHECKING:
    from apps.providers.http import DirectPost


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


def map_http_error(exc: httpx2.HTTPError) -> ProviderError:
    """Translate an httpx2 transport exception into the taxonomy."""
    unsafe = _unsafe_cause(exc)
    if unsafe is not None:
        return ProviderError("unsafe_url", unsafe.error.message)
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError("timeout")
    if isinstance(exc, httpx2.HTTPStatusError):
        return error_for_response(exc.response)
    if isinstance(exc, httpx2.DecodingError):
        return ProviderError("provider_error", "malformed response")
    if isinstance(exc, httpx2.TransportError):
        return ProviderError("unavailable", "connection failed")
    return ProviderError("provider_error", exc.__class__.__name__)


def error_for_response(response: httpx2.Response) -> ProviderError:
    """A 4xx/5xx answer as a ProviderError, with the provider's own message."""
    return error_for_status(
        response.status_code,
        _body_detail(response),
        parse_retry_after(response.headers.get("retry-after")),
    )


def json_body(response: httpx2.Response) -> Any:
    """The parsed JSON body of a successful answer, or provider_error. NaN and
    infinity are not JSON (Python's own encoder writes them all the same): an answer
    holding one could be neither returned nor logged, so it is malformed too."""
    try:
        return response.json(parse_constant=_not_json, parse_float=_finite)
    except ValueError:  # JSONDecodeError and undecodable bytes alike
        raise ProviderError("provider_error", "malformed response") from None


def _finite(text: str) -> float:
    """A JSON number as a float; a number beyond a float's range (`1e400`) would be
    infinity, which is not JSON either."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a float's range")
    return value


def token_count(value: Any) -> int:
    """A token count from an answer's usage: absent is 0; otherwise a whole number
    from 0 up to what a counter column holds (ValueError for anything else: a
    budget must not count what the provider did not say)."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62:
        return value
    raise ValueError("not a token count")


def post_json(post: DirectPost, body: dict[str, Any]) -> Any:
    """POSTs `body` as JSON on a connector's DirectPost (the SDK client's own pool,
    headers and timeout) and returns the answer's parsed JSON; any failure is a
    ProviderError. A header value HTTP cannot carry (a key that is not ASCII, or
    with a line break) is `bad_request` before anything is sent."""
    content = _json_bytes(body)
    try:
        response = post(content)
    except httpx2.LocalProtocolError:  # h11 refuses the header: nothing was sent
        raise _unsendable() from None
    except httpx2.HTTPError as exc:
        raise map_http_error(exc) from None
    except ValueError:  # httpx cannot encode the header: not ASCII
        raise _unsendable() from None
    if not response.is_success:
        raise error_for_response(response)
    return json_body(response)


def _unsendable() -> ProviderError:
    return ProviderError(
        "bad_request",
        "the key or another header value holds characters HTTP headers cannot carry",
    )


def _json_bytes(body: dict[str, Any]) -> bytes:
    """A request body as JSON; the standard library's encoder for what orjson does
    not take (an integer beyond 64 bits, another type). The doors refuse numbers
    JSON cannot carry before they get here; the fallback refuses them too."""
    try:
        return orjson.dumps(body)
    except TypeError:
        pass
    try:
        return json.dumps(body, allow_nan=False).encode()
    except ValueError:
        raise ProviderError(
            "bad_request", "a parameter holds a number JSON cannot carry"
        ) from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _body_detail(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, list):
            error = "; ".join(str(e) for e in error)
        if isinstance(error, str) and error:
            return error
    return f"HTTP {response.status_code}"
