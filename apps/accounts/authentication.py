"""`Authorization: Api-Key <key>` for machines (per-tenant keys, hashed at rest)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any, cast

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts.models import ApiKey
from apps.core.db import current_schema
from apps.core.trust import TrustCache

# Keys this process verified recently: (schema, sha256 of the key) -> key row. The
# raw key is never kept.
_verified: TrustCache[ApiKey] = TrustCache("API_KEY_CACHE_SECONDS")


def forget_api_key(prefix: str) -> None:
    """Drop this process's verified copies of a key (revoked, edited or deleted)."""
    _verified.forget(lambda _, api_key: api_key.prefix == prefix)


def _lookup(raw: str) -> ApiKey:
    """The key row for a raw key, verified against the database at most every
    API_KEY_CACHE_SECONDS per process."""
    cache_key = (current_schema(), hashlib.sha256(raw.encode()).hexdigest())
    return _verified.get_or_read(
        cache_key, lambda: cast(ApiKey, ApiKey.objects.get_from_key(raw))
    )


class ApiKeyPrincipal:
    """What `request.user` is when a machine calls with an API key."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.scope = api_key.scope
        self.pk = None

    def __str__(self) -> str:
        return f"api-key:{self.api_key.prefix}"

    def get_username(self) -> str:
        return str(self)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"
    # last_used_at is refreshed at most this often so the hot path rarely writes.
    touch_interval = timedelta(minutes=1)

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode(
            "latin-1", "replace"
        )
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        return self.authenticate_key(raw.strip())

    def authenticate_key(self, raw: str) -> tuple[Any, ApiKey]:
        if not raw or "." not in raw or len(raw) > 200:
            raise exceptions.AuthenticationFailed("Malformed API key.")
        try:
            api_key = _lookup(raw)
        except ApiKey.DoesNotExist as exc:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API key."
            ) from exc
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("API key has expired.")
        now = timezone.now()
        if (
            api_key.last_used_at is None
            or now - api_key.last_used_at > self.touch_interval
        ):
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class BearerApiKeyAuthentication(ApiKeyAuthentication):
    """`Authorization: Bearer <key>` as OpenAI SDKs send it (OpenAI-compatible door)."""

    keyword = "Bearer"
