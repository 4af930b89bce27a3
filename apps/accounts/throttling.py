"""Per-caller throttling of the prediction doors: a fixed-window counter per
(scope, API key or user) in the tenant's own schema, shared by every web process and
node through PostgreSQL (one statement per request, no process memory involved).

A fixed window lets a caller spend its budget at the end of one window and again at
the start of the next: at most twice the rate over any span of one window."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.db import connection
from psycopg import sql
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.authentication import ApiKeyPrincipal
from apps.core.db import current_schema, is_public_schema


@lru_cache(maxsize=1024)
def _hit_statement(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {table} AS t (scope, ident, window_start, hits) "
        "VALUES (%s, %s, %s, 1) "
        "ON CONFLICT (scope, ident) DO UPDATE SET "
        "hits = CASE WHEN t.window_start = EXCLUDED.window_start "
        "THEN t.hits + 1 ELSE 1 END, "
        "window_start = EXCLUDED.window_start "
        "RETURNING hits"
    ).format(table=sql.Identifier(schema, "accounts_throttlewindow"))


def throttle_hit(scope: str, ident: str, window: int) -> int:
    """Count one request of `ident` in `window` and return the window's count so far.
    Sent on the request's connection without a search_path round trip (the
    statement names its schema)."""
    statement = _hit_statement(current_schema())
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with connection.wrap_database_errors:
        row = raw.execute(statement, [scope, ident, window]).fetchone()
    return int(row[0]) if row else 0


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
        now = self.timer()
        window = int(now // self.duration)
        if throttle_hit(self.scope, ident[:200], window) <= self.num_requests:
            return True
        self.wait_seconds = (window + 1) * self.duration - now
        return False

    def wait(self) -> float | None:
        return max(getattr(self, "wait_seconds", 0.0), 0.0)
