"""Per-caller throttling of the prediction doors: a fixed-window counter per
(scope, API key or user) in the tenant's own schema, shared by every web process and
node through PostgreSQL.

A process does not ask the database on every request: it leases a share of the
budget (a hundredth of the limit, at least one request) with one upsert and spends
it locally; only when the lease is spent does it go back. Leased requests count
against the budget whether or not they are used, so the shared limit is never
exceeded; a busy caller costs one round trip per lease, a limit of a few requests
per window is exact.

A fixed window lets a caller spend its budget at the end of one window and again at
the start of the next: at most twice the rate over any span of one window."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from psycopg import sql
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.authentication import ApiKeyPrincipal
from apps.core.db import current_schema, is_public_schema, raw_execute, rendered

# A lease is this fraction of the window's limit (at least one request).
LEASE_FRACTION = 100


@lru_cache(maxsize=1024)
def _lease_statement(schema: str) -> bytes:
    return rendered(
        sql.SQL(
            "INSERT INTO {table} AS t (scope, ident, window_start, hits) "
            "VALUES (%(scope)s, %(ident)s, %(window)s, %(want)s) "
            "ON CONFLICT (scope, ident) DO UPDATE SET "
            "hits = CASE WHEN t.window_start = EXCLUDED.window_start "
            "THEN t.hits + %(want)s ELSE %(want)s END, "
            "window_start = EXCLUDED.window_start "
            "RETURNING hits"
        ).format(table=sql.Identifier(schema, "accounts_throttlewindow"))
    )


def throttle_lease(scope: str, ident: str, window: int, want: int, limit: int) -> int:
    """Take up to `want` requests of `ident`'s budget in `window`; returns how many
    were granted (0 when the budget is spent). One statement, sent on the request's
    connection without a search_path round trip (it names its schema)."""
    params = {"scope": scope, "ident": ident, "window": window, "want": want}
    row = raw_execute(_lease_statement(current_schema()), params).fetchone()
    after = int(row[0]) if row else want
    return max(0, min(want, limit - (after - want)))


# (schema, scope, ident) -> [window, requests left of this process's lease]
_leases: dict[tuple[str, str, str], list[int]] = {}
_leases_lock = threading.Lock()
_LEASES_MAX = 10_000


class PredictRateThrottle(SimpleRateThrottle):
    scope = "predict"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            return f"key:{user.api_key.prefix}"
        if getattr(user, "is_authenticated", False):
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None or is_public_schema(current_schema()):
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        ident = ident[:200]
        now = self.timer()
        window = int(now // self.duration)
        key = (current_schema(), self.scope, ident)
        with _leases_lock:
            lease = _leases.get(key)
            if lease is not None and lease[0] == window and lease[1] > 0:
                lease[1] -= 1
                return True
        want = max(1, self.num_requests // LEASE_FRACTION)
        granted = throttle_lease(self.scope, ident, window, want, self.num_requests)
        if granted > 0:
            with _leases_lock:
                if len(_leases) >= _LEASES_MAX:
                    _leases.clear()
                _leases[key] = [window, granted - 1]
            return True
        self.wait_seconds = (window + 1) * self.duration - now
        return False

    def wait(self) -> float | None:
        return max(getattr(self, "wait_seconds", 0.0), 0.0)
