"""One error taxonomy for every provider call, whatever SDK or protocol is behind it."""

from __future__ import annotations

from rest_framework import status

from apps.core.errors import ApplicationError

READABLE = {
    "auth": "The provider rejected the credentials (check the API key and organisation).",
    "rate_limited": "The provider is rate limiting requests; try again shortly.",
    "timeout": "The provider did not answer within the configured timeout.",
    "unavailable": "The provider could not be reached or is failing.",
    "bad_request": "The provider refused the request as invalid.",
    "provider_error": "The provider answered with something ModelHub cannot use.",
    "quota_exceeded": "This provider's monthly budget is spent; calls are refused.",
    "unsafe_url": "The provider URL points at an address that is not allowed.",
    "disabled": "This provider is disabled.",
    "unsupported": "This provider kind does not support this operation.",
}

HTTP_STATUS = {
    "auth": status.HTTP_502_BAD_GATEWAY,
    "rate_limited": status.HTTP_429_TOO_MANY_REQUESTS,
    "timeout": status.HTTP_504_GATEWAY_TIMEOUT,
    "unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "bad_request": status.HTTP_400_BAD_REQUEST,
    "provider_error": status.HTTP_502_BAD_GATEWAY,
    "quota_exceeded": status.HTTP_429_TOO_MANY_REQUESTS,
    "unsafe_url": status.HTTP_400_BAD_REQUEST,
    "disabled": status.HTTP_409_CONFLICT,
    "unsupported": status.HTTP_400_BAD_REQUEST,
}

RETRYABLE = {"rate_limited", "timeout", "unavailable"}


class ProviderError(ApplicationError):
    """A failed provider call. `code` is one of the taxonomy above; `detail` is the
    provider's own message with any secret scrubbed."""

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        upstream_status: int | None = None,
    ) -> None:
        message = READABLE.get(code, READABLE["provider_error"])
        if detail:
            message = f"{message} ({detail[:300]})"
        super().__init__(
            message, code=code, status_code=status_code or HTTP_STATUS.get(code, 502)
        )
        self.detail = detail
        self.retry_after = retry_after
        self.upstream_status = upstream_status

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


def error_for_status(
    status_code: int, detail: str = "", retry_after: float | None = None
) -> ProviderError:
    """Map an upstream HTTP status to the taxonomy."""
    if status_code in (401, 403):
        code = "auth"
    elif status_code == 429:
        code = "rate_limited"
    elif status_code in (408, 504):
        code = "timeout"
    elif status_code >= 500:
        code = "unavailable"
    elif 400 <= status_code < 500:
        code = "bad_request"
    else:
        code = "provider_error"
    return ProviderError(
        code, detail, retry_after=retry_after, upstream_status=status_code
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    from django.utils import timezone

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())
