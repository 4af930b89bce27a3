"""Prometheus metrics: the metric objects, the instrumentation helpers the request
path calls, a scrape-time collector for numbers that live in the database, and the
`/metrics` response (token / network protected, optionally limited to one tenant).

Counters and histograms live in process memory, or, when the environment variable
`PROMETHEUS_MULTIPROC_DIR` is set before this module is imported (gunicorn.conf.py
does it), in per-process files that the scrape sums (prometheus-client's
multiprocess mode). Database-derived gauges are computed at scrape time with a fixed
number of queries, whatever the number of tenants.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from psycopg import sql

from apps.core.db import current_schema, set_public_schema

F = TypeVar("F", bound=Callable[..., Any])

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    float("inf"),
)

HTTP_REQUESTS = Counter(
    "modelhub_http_requests",
    "HTTP requests answered, by tenant, route, method and status code.",
    ["tenant", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "modelhub_http_request_duration_seconds",
    "HTTP request latency, by tenant and route.",
    ["tenant", "route"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter(
    "modelhub_predictions",
    "Prediction attempts logged, one per inference table row "
    "(group/member are the ids in that table).",
    ["tenant", "group", "member", "role", "status"],
)
PREDICTION_LATENCY = Histogram(
    "modelhub_prediction_duration_seconds",
    "End-to-end prediction latency as logged.",
    ["tenant", "group", "member", "role"],
    buckets=LATENCY_BUCKETS,
)
LOG_ROWS = Counter(
    "modelhub_inference_log_rows",
    "Inference log rows by outcome (written, failed).",
    ["tenant", "group", "outcome"],
)
EXPLANATIONS = Counter(
    "modelhub_explanations",
    "SHAP explanation calls by outcome (ok, error).",
    ["tenant", "outcome"],
)
EXPLANATION_SECONDS = Histogram(
    "modelhub_explanation_duration_seconds",
    "Time spent computing SHAP explanations (one call may cover several rows).",
    ["tenant"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_CALLS = Counter(
    "modelhub_provider_calls",
    "Provider call attempts by outcome: ok or the error code.",
    ["tenant", "provider", "kind", "outcome"],
)


def _tenant() -> str:
    return current_schema() or ""


# --- instrumentation helpers (called from the request path) -----------------------


def counted_log_write(group_id: int, row: dict[str, Any]) -> bool:
    """`apps.inference.writer.log_write`, counting the row by group and member."""
    from apps.inference.writer import log_write

    tenant, group = _tenant(), str(group_id)
    try:
        spooled = log_write(group_id, row)
    except Exception:
        LOG_ROWS.labels(tenant, group, "failed").inc()
        raise
    member, role = str(row.get("member_id") or ""), str(row.get("role") or "")
    written, predictions, latency = _row_series(
        tenant, group, member, role, str(row.get("status", ""))
    )
    written.inc()
    predictions.inc()
    if row.get("latency_ms") is not None:
        latency.observe(float(row["latency_ms"]) / 1000)
    return spooled


@functools.lru_cache(maxsize=4096)
def _row_series(
    tenant: str, group: str, member: str, role: str, status: str
) -> tuple[Any, Any, Any]:
    """The series one logged row counts in (prometheus-client's `labels()` takes a
    lock and builds its key on every call; this runs once per prediction)."""
    return (
        LOG_ROWS.labels(tenant, group, "written"),
        PREDICTIONS.labels(tenant, group, member, role, status),
        PREDICTION_LATENCY.labels(tenant, group, member, role),
    )


def provider_call(provider: Any, outcome: str) -> None:
    PROVIDER_CALLS.labels(_tenant(), provider.name, provider.kind, outcome).inc()


def timed_explanation(func: F) -> F:
    """Decorator: counts and times one explanation call."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tenant = _tenant()
        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except Exception:
            EXPLANATIONS.labels(tenant, "error").inc()
            raise
        finally:
            EXPLANATION_SECONDS.labels(tenant).observe(time.perf_counter() - started)
        EXPLANATIONS.labels(tenant, "ok").inc()
        return result

    return wrapper  # type: ignore[return-value]


def http_observe(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    tenant = getattr(getattr(request, "tenant", None), "schema_name", "") or ""
    match = getattr(request, "resolver_match", None)
    route = (match.route or match.view_name) if match else "unmatched"
    HTTP_REQUESTS.labels(tenant, route, request.method, str(response.status_code)).inc()
    HTTP_LATENCY.labels(tenant, route).observe(seconds)


# --- scrape-time collector: numbers that live in the database ---------------------


class DatabaseCollector:
    """This host's inference log spool (spool mode), queue depth and task outcomes
    (public schema), and per tenant: jobs by state,
    provider circuit breakers, partitions ahead and default-partition rows. One query
    per family across every tenant schema (UNION ALL over the schemas that have the
    table), so the cost does not grow in round trips with the tenant count."""

    def __init__(self, tenant: str | None = None) -> None:
        self.tenant = tenant

    def collect(self) -> Iterator[Metric]:
        with contextlib.suppress(OSError):  # an unreadable spool: the rest answers
            yield from self._spool()
        for family in (self._queue, self._jobs, self._breakers, self._partitions):
            try:
                yield from family()
            except DatabaseError:
                # A scrape must answer even when one source is unavailable.
                connection.close_if_unusable_or_obsolete()

    def _schemas_with(self, table: str) -> list[str]:
        query = (
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = %s AND table_schema <> 'public'"
        )
        params: list[Any] = [table]
        if self.tenant:
            query += " AND table_schema = %s"
            params.append(self.tenant)
        with connection.cursor() as cursor:
            cursor.execute(query + " ORDER BY 1", params)
            return [r[0] for r in cursor.fetchall()]

    def _union(self, table: str, select: str, tail: str = "") -> list[tuple[Any, ...]]:
        schemas = self._schemas_with(table)
        if not schemas:
            return []
        parts = [
            sql.SQL("SELECT {} AS tenant, {} FROM {} {}").format(
                sql.Literal(s), sql.SQL(select), sql.Identifier(s, table), sql.SQL(tail)
            )
            for s in schemas
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL(" UNION ALL ").join(parts))  # type: ignore[arg-type]
            return list(cursor.fetchall())

    def _spool(self) -> Iterator[Metric]:
        """This host's inference log spool (spool mode): it mixes tenants, so only
        the operator's scrape sees it."""
        if self.tenant or settings.INFERENCE_LOG_MODE != "spool":
            return
        from pathlib import Path

        from apps.inference.spool import backlog

        state = backlog(Path(settings.INFERENCE_SPOOL_DIR))
        for name, help_text, value in (
            (
                "modelhub_inference_spool_files",
                "Spool files on this host: one per live web process, and those of "
                "processes that are gone until they are replayed.",
                state.files,
            ),
            (
                "modelhub_inference_spool_backlog_bytes",
                "Log rows written to this host's spool and not yet in their tables.",
                state.pending_bytes,
            ),
            (
                "modelhub_inference_spool_held_files",
                "Spool files holding the rows of a table that refuses them for now "
                "(a missing column, a revoked privilege), retried on their own.",
                state.held_files,
            ),
            (
                "modelhub_inference_spool_refused_rows",
                "Log rows PostgreSQL refused, kept in the spool's rejected/ folder.",
                state.refused_rows,
            ),
        ):
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], value)
            yield family

    def _queue(self) -> Iterator[Metric]:
        if self.tenant:
            return  # the queue is shared: only the operator's scrape sees it
        from django_q.models import Failure, OrmQ, Success

        depth = GaugeMetricFamily(
            "modelhub_queue_depth",
            "Tasks in the django-q2 ORM queue: waiting, or taken by a worker (their "
            "lock runs until Q_RETRY seconds after pickup, then they are redelivered).",
            labels=["state"],
        )
        from django.utils import timezone

        total = OrmQ.objects.count()
        taken = OrmQ.objects.filter(lock__gt=timezone.now()).count()
        depth.add_metric(["waiting"], total - taken)
        depth.add_metric(["taken"], taken)
        yield depth
        outcomes = GaugeMetricFamily(
            "modelhub_tasks_recorded",
            "Finished tasks kept by django-q2 (bounded by Q_CLUSTER save_limit).",
            labels=["outcome"],
        )
        outcomes.add_metric(["success"], Success.objects.count())
        outcomes.add_metric(["failure"], Failure.objects.count())
        yield outcomes

    def _jobs(self) -> Iterator[Metric]:
        from django.apps import apps

        try:
            job = apps.get_model("jobs", "Job")
        except LookupError:
            return  # the jobs app has no Job model (yet)
        field = next(
            (f for f in ("status", "state") if hasattr(job, f)),
            None,
        )
        if field is None:
            return
        family = GaugeMetricFamily(
            "modelhub_jobs", "Jobs by state.", labels=["tenant", "state"]
        )
        for tenant, state, n in self._union(
            job._meta.db_table,
            f'"{field}", count(*)',  # field is one of two fixed names
            f'GROUP BY "{field}"',
        ):
            family.add_metric([tenant, str(state)], n)
        yield family

    def _breakers(self) -> Iterator[Metric]:
        from apps.providers.models import ProviderConfig

        open_ = GaugeMetricFamily(
            "modelhub_provider_circuit_open",
            "1 while the provider's circuit breaker is open.",
            labels=["tenant", "provider", "kind"],
        )
        failures = GaugeMetricFamily(
            "modelhub_provider_consecutive_failures",
            "Consecutive failures counted by the circuit breaker.",
            labels=["tenant", "provider", "kind"],
        )
        rows = self._union(
            ProviderConfig._meta.db_table,
            "name, kind, consecutive_failures, "
            "(circuit_open_until IS NOT NULL AND circuit_open_until > now())::int",
        )
        for tenant, name, kind, n_failures, is_open in rows:
            open_.add_metric([tenant, name, kind], is_open)
            failures.add_metric([tenant, name, kind], n_failures)
        yield open_
        yield failures

    def _partitions(self) -> Iterator[Metric]:
        """From the catalog and statistics only: no table is scanned."""
        ahead = GaugeMetricFamily(
            "modelhub_inference_partitions_ahead",
            "Daily partitions that exist after today, per group table.",
            labels=["tenant", "group"],
        )
        default_rows = GaugeMetricFamily(
            "modelhub_inference_default_partition_rows",
            "Live rows in a group's default partition (statistics estimate; "
            "should be 0: rows land there only when no daily partition exists).",
            labels=["tenant", "group"],
        )
        today = time.strftime("%Y%m%d", time.gmtime())
        query = (
            "SELECT n.nspname, substring(c.relname from '^inference_log_g([0-9]+)'), "
            "count(*) FILTER (WHERE substring(c.relname from '_p([0-9]{8})$') > %s), "
            "COALESCE(MAX(s.n_live_tup) FILTER (WHERE c.relname LIKE '%%\\_default'), 0) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE c.relname ~ '^inference_log_g[0-9]+_' AND n.nspname <> 'public'"
        )
        params: list[Any] = [today]
        if self.tenant:
            query += " AND n.nspname = %s"
            params.append(self.tenant)
        with connection.cursor() as cursor:
            cursor.execute(query + " GROUP BY 1, 2 ORDER BY 1, 2", params)
            for schema, group, n_ahead, n_default in cursor.fetchall():
                ahead.add_metric([schema, group], n_ahead)
                default_rows.add_metric([schema, group], n_default)
        yield ahead
        yield default_rows


# --- the scrape -------------------------------------------------------------------


class _TenantFilter:
    """Only the series labelled with one tenant; families without a tenant label
    (process, queue) are left out."""

    def __init__(self, source: Any, tenant: str) -> None:
        self.source, self.tenant = source, tenant

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            samples = [
                s for s in family.samples if s.labels.get("tenant") == self.tenant
            ]
            if samples:
                family.samples = samples
                yield family


class _Chain:
    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


def process_registry() -> Any:
    """This process's metrics, or every process's when in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def scrape(tenant: str | None = None) -> bytes:
    """The Prometheus text exposition, for everyone or for one tenant schema."""
    source: Any = _Chain(process_registry(), DatabaseCollector(tenant))
    if tenant:
        source = _TenantFilter(source, tenant)
    return generate_latest(source)


def _allowed(request: HttpRequest) -> bool | None:
    """True/False when protection is configured; None when /metrics is switched off."""
    token: str = getattr(settings, "METRICS_TOKEN", "")
    networks: list[str] = getattr(settings, "METRICS_ALLOWED_NETWORKS", [])
    if not token and not networks:
        return None
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    if networks:
        try:
            addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)
    return False


def metrics_response(request: HttpRequest) -> HttpResponse:
    """`GET /metrics[?tenant=<slug>]`, answered on any host before tenant resolution."""
    from django.http import JsonResponse

    allowed = _allowed(request)
    rid = getattr(request, "request_id", None)
    if allowed is None:
        return JsonResponse(
            {
                "error": {
                    "code": "not_found",
                    "message": "Metrics are disabled: set METRICS_TOKEN or "
                    "METRICS_ALLOWED_NETWORKS.",
                },
                "request_id": rid,
            },
            status=404,
        )
    if not allowed:
        response = JsonResponse(
            {
                "error": {
                    "code": "not_authenticated",
                    "message": "Bearer token required.",
                },
                "request_id": rid,
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    tenant = request.GET.get("tenant") or None
    if tenant is not None:
        from apps.tenants.models import Organization

        set_public_schema()
        if (
            tenant == "public"
            or not Organization.objects.filter(schema_name=tenant).exists()
        ):
            return JsonResponse(
                {
                    "error": {"code": "not_found", "message": f"No tenant '{tenant}'."},
                    "request_id": rid,
                },
                status=404,
            )
    set_public_schema()
    return HttpResponse(scrape(tenant), content_type=CONTENT_TYPE_LATEST)
