"""Every provider call passes here: enabled, budget, circuit breaker, shared rate
limit, retries with backoff and jitter (honouring Retry-After), usage accounting,
and scrubbing of the key from any error text."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone
from psycopg import sql

from apps.core.db import current_schema, raw_commit, rendered
from apps.core.metrics import provider_call
from apps.providers.connectors import connector_class
from apps.providers.connectors.base import Connector, InvokeResult, ProviderSettings
from apps.providers.errors import ProviderError
from apps.providers.models import ProviderConfig, ProviderRateWindow, ProviderUsage
from apps.providers.selectors import forget_serving_provider

T = TypeVar("T")
BREAKER_CODES = {"timeout", "unavailable"}


def connector_for(provider: ProviderConfig) -> Connector:
    """A connector holding this provider's settings, the key decrypted for the call."""
    return connector_class(provider.kind)(
        ProviderSettings(
            kind=provider.kind,
            base_url=provider.base_url,
            api_key=provider.api_key or "",
            organization=provider.organization,
            project=provider.project,
            default_model=provider.default_model,
            timeout=provider.timeout_seconds,
            options=dict(provider.settings or {}),
        )
    )


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff; a provider's Retry-After wins when given."""
    if retry_after is not None:
        return retry_after
    cap = min(
        settings.PROVIDER_BACKOFF_MAX, settings.PROVIDER_BACKOFF_BASE * 2**attempt
    )
    return random.uniform(0, cap)


def _scrub(error: ProviderError, secret: str) -> ProviderError:
    if secret and len(secret) >= 4:
        error.message = error.message.replace(secret, "••••")
        error.detail = error.detail.replace(secret, "••••")
        error.args = (error.message,)
    return error


def _month_start() -> date:
    today = timezone.localdate()
    return today.replace(day=1)


def quota_check(provider: ProviderConfig) -> None:
    if provider.monthly_token_budget is None and provider.monthly_cost_budget is None:
        return
    spent = ProviderUsage.objects.filter(
        provider=provider, day__gte=_month_start()
    ).aggregate(tokens=Sum(F("tokens_in") + F("tokens_out")), cost=Sum("cost"))
    tokens, cost = spent["tokens"] or 0, spent["cost"] or Decimal(0)
    if (
        provider.monthly_token_budget is not None
        and tokens >= provider.monthly_token_budget
    ):
        raise ProviderError(
            "quota_exceeded", f"{tokens} of {provider.monthly_token_budget} tokens used"
        )
    if (
        provider.monthly_cost_budget is not None
        and cost >= provider.monthly_cost_budget
    ):
        raise ProviderError(
            "quota_exceeded", f"{cost:.2f} of {provider.monthly_cost_budget} spent"
        )


def breaker_check(provider: ProviderConfig, *, fresh: bool = False) -> None:
    """Refuse while the breaker is open. `fresh`: the caller read the provider row
    recently (the serving path: at most GROUP_ROUTE_TRUST_SECONDS ago, and again
    after this process changed the breaker), so its state is used as it is."""
    open_until = (
        provider.circuit_open_until
        if fresh
        else ProviderConfig.objects.filter(pk=provider.pk)
        .values_list("circuit_open_until", flat=True)
        .first()
    )
    now = timezone.now()
    if open_until and open_until > now:
        raise ProviderError(
            "unavailable",
            f"circuit open after repeated failures; retrying after "
            f"{open_until:%H:%M:%S} UTC",
            retry_after=(open_until - now).total_seconds(),
        )


def _breaker_record(provider: ProviderConfig, *, failed: bool) -> None:
    # The serving path's copy of the row must show this process its own breaker.
    forget_serving_provider(provider.pk)
    qs = ProviderConfig.objects.filter(pk=provider.pk)
    if not failed:
        qs.filter(consecutive_failures__gt=0).update(
            consecutive_failures=0, circuit_open_until=None
        )
        return
    qs.update(consecutive_failures=F("consecutive_failures") + 1)
    qs.filter(consecutive_failures__gte=settings.PROVIDER_BREAKER_THRESHOLD).update(
        circuit_open_until=timezone.now()
        + timedelta(seconds=settings.PROVIDER_BREAKER_COOLDOWN)
    )


def rate_limit_acquire(provider: ProviderConfig) -> None:
    """Count this call in the current minute, shared by every process (one upsert)."""
    limit = provider.rate_limit_per_minute
    if not limit:
        return
    now = timezone.now()
    window = now.replace(second=0, microsecond=0)
    table = ProviderRateWindow._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (provider_id, window_start, count) VALUES (%s, %s, 1) "  # noqa: S608
            "ON CONFLICT (provider_id, window_start) DO UPDATE "
            f"SET count = {table}.count + 1 RETURNING count",
            [provider.pk, window],
        )
        count = cursor.fetchone()[0]
    if count == 1:  # first call of a new window: forget windows older than an hour
        ProviderRateWindow.objects.filter(
            provider=provider, window_start__lt=window - timedelta(hours=1)
        ).delete()
    if count > limit:
        wait = 60 - (now - window).total_seconds()
        raise ProviderError(
            "rate_limited",
            f"limit of {limit} requests per minute reached",
            retry_after=wait,
        )


def record_usage(
    provider: ProviderConfig,
    *,
    latency_ms: float,
    error: bool,
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> None:
    tokens_in, tokens_out = int(tokens_in or 0), int(tokens_out or 0)
    cost = (
        Decimal(tokens_in) * provider.price_per_1k_input
        + Decimal(tokens_out) * provider.price_per_1k_output
    ) / 1000
    day = timezone.localdate()
    # Committed like the inference log row (no WAL flush wait unless
    # INFERENCE_LOG_SYNCHRONOUS_COMMIT is on); on the serving path in the log row's
    # own transaction (writes_together), else in one of its own. When the row is
    # spooled, its line carries the counter instead (the spooled form), and the
    # drain adds it in the row's transaction: the request sends nothing.
    raw_commit(
        _usage_statement(current_schema()),
        [
            provider.pk,
            day,
            1,
            int(error),
            latency_ms,
            tokens_in,
            tokens_out,
            cost,
        ],
        later=True,
        spooled=(
            f"{provider.pk},{day.isoformat()},{int(error)},{float(latency_ms)!r},"
            f"{tokens_in},{tokens_out},{cost}"
            if settings.INFERENCE_LOG_MODE == "spool"
            and settings.INFERENCE_SPOOL_CARRY_USAGE
            else None
        ),
    )


@lru_cache(maxsize=1024)
def _usage_statement(schema: str, *, guarded: bool = False) -> bytes:
    """Add calls to a provider's counters of a day: (provider, day, requests,
    errors, latency, tokens in, tokens out, cost). `guarded` (the spool's drain,
    which adds calls later): then the provider once more, and a provider deleted
    since, which has no counters left, is skipped."""
    return rendered(
        sql.SQL(
            "INSERT INTO {} AS u (provider_id, day, requests, errors, latency_ms_total, "
            "tokens_in, tokens_out, cost) SELECT %s, %s::date, %s, %s, %s, %s, %s, "
            "%s::numeric {} ON CONFLICT (provider_id, day) DO UPDATE SET "
            "requests = u.requests + EXCLUDED.requests, "
            "errors = u.errors + EXCLUDED.errors, "
            "latency_ms_total = u.latency_ms_total + EXCLUDED.latency_ms_total, "
            "tokens_in = u.tokens_in + EXCLUDED.tokens_in, "
            "tokens_out = u.tokens_out + EXCLUDED.tokens_out, cost = u.cost + EXCLUDED.cost"
        ).format(
            sql.Identifier(schema, ProviderUsage._meta.db_table),
            sql.SQL("WHERE EXISTS (SELECT FROM {} WHERE id = %s)").format(
                sql.Identifier(schema, ProviderConfig._meta.db_table)
            )
            if guarded
            else sql.SQL(""),
        )
    )


SpooledUsage = tuple[int, date, int, float, int, int, Decimal]


def spooled_usage_parse(text: bytes) -> list[SpooledUsage]:
    """The provider calls a spool line carries (record_usage's spooled forms, joined
    by ";"); ValueError when it does not hold them."""
    calls = []
    try:
        for part in text.decode().split(";"):
            pk, day, error, latency, tokens_in, tokens_out, cost = part.split(",")
            if not math.isfinite(float(latency)):
                raise ValueError("not a provider call's usage")
            calls.append(
                (
                    int(pk),
                    date.fromisoformat(day),
                    int(error),
                    float(latency),
                    int(tokens_in),
                    int(tokens_out),
                    Decimal(cost),
                )
            )
    except ArithmeticError:  # decimal.InvalidOperation: not a number
        raise ValueError("not a provider call's usage") from None
    return calls


def spooled_usage_commit(cursor: Any, schema: str, calls: list[SpooledUsage]) -> None:
    """Add spooled provider calls to the usage counters of `schema`, one statement
    per provider and day, on the spool drain's cursor (in its transaction)."""
    totals: dict[tuple[int, date], list[Any]] = {}
    for pk, day, error, latency, tokens_in, tokens_out, cost in calls:
        total = totals.setdefault((pk, day), [0, 0, 0.0, 0, 0, Decimal(0)])
        total[0] += 1
        total[1] += error
        total[2] += latency
        total[3] += tokens_in
        total[4] += tokens_out
        total[5] += cost
    statement = _usage_statement(schema, guarded=True)
    for (pk, day), total in sorted(totals.items()):  # one lock order for all drains
        cursor.execute(statement, [pk, day, *total, pk])


def call_provider(
    provider: ProviderConfig,
    fn: Callable[[Connector], T],
    *,
    attempts: int | None = None,
    fresh: bool = False,
) -> T:
    """Run `fn(connector)` under every protection. Raises ProviderError only.
    `fresh`: `provider` was read recently (the serving path's copy), so its breaker
    state is used as it is, and a success resets the breaker only when that row had
    failures."""
    if not provider.enabled:
        raise ProviderError("disabled")
    quota_check(provider)
    breaker_check(provider, fresh=fresh)
    connector = connector_for(provider)
    secret = connector.config.api_key
    total = attempts if attempts is not None else provider.max_retries + 1
    for attempt in range(total):
        rate_limit_acquire(provider)
        started = time.perf_counter()
        try:
            result = fn(connector)
        except ProviderError as exc:
            latency = (time.perf_counter() - started) * 1000
            record_usage(provider, latency_ms=latency, error=True)
            error = _scrub(exc, secret)
            provider_call(provider, error.code)
            last_try = attempt == total - 1
            too_long = (error.retry_after or 0) > settings.PROVIDER_BACKOFF_MAX
            if error.retryable and not last_try and not too_long:
                time.sleep(backoff_delay(attempt, error.retry_after))
                continue
            _breaker_record(provider, failed=error.code in BREAKER_CODES)
            raise error from None
        latency = (time.perf_counter() - started) * 1000
        tokens_in = tokens_out = 0
        if isinstance(result, InvokeResult):
            tokens_in, tokens_out = result.tokens_in, result.tokens_out
        record_usage(
            provider,
            latency_ms=latency,
            error=False,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
        if not fresh or provider.consecutive_failures:
            _breaker_record(provider, failed=False)
        provider_call(provider, "ok")
        return result
    raise AssertionError("unreachable")  # pragma: no cover
