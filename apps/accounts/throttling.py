"""Per-key throttling of the prediction doors, keyed on (schema, key prefix or user).
The counters live in the default cache: per process with local memory, shared by all
processes when REDIS_URL is set."""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.authentication import ApiKeyPrincipal
from apps.core.db import current_schema


class PredictRateThrottle(SimpleRateThrottle):
    scope = "predict"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            ident = f"key:{user.api_key.prefix}"
        elif getattr(user, "is_authenticated", False):
            ident = f"user:{user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{current_schema()}:{ident}"
