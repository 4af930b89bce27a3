"""Request id, health probes, metrics and tenant log context."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_tenants.middleware.main import TenantMainMiddleware

from apps.core.context import accept_request_id, request_id_var, tenant_var
from apps.core.db import set_public_schema
from apps.core.trust import TrustCache

logger = logging.getLogger(__name__)
Handler = Callable[[HttpRequest], HttpResponse]


class RequestIdMiddleware:
    """Honours a sane `X-Request-ID`, else mints a UUIDv7; echoes it back."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = accept_request_id(request.headers.get("X-Request-ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        # Set, not reset afterwards: Django logs 4xx/5xx after the middleware chain
        # returns, and that line must still carry the id. The next request overwrites.
        request_id_var.set(request_id)
        tenant_var.set(None)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


_migrations_applied = False


def readiness() -> tuple[bool, dict[str, str]]:
    """Database reachable and every migration of the public schema applied."""
    global _migrations_applied
    checks: dict[str, str] = {}
    try:
        set_public_schema()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
        if not _migrations_applied:
            # Building the migration graph is slow; once applied, they stay applied.
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
            _migrations_applied = not pending
        checks["migrations"] = "ok" if _migrations_applied else "pending"
    except DatabaseError as exc:
        logger.warning("readiness check failed: %s", exc.__class__.__name__)
        checks["database"] = "unreachable"
        checks["migrations"] = "unknown"
    return all(v == "ok" for v in checks.values()), checks


class HealthMiddleware:
    """`/healthz` and `/readyz` answer on any host, before tenant resolution, so that
    load balancers probing by IP get an answer and never touch tenant data."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            ok, checks = readiness()
            return JsonResponse(
                {"status": "ok" if ok else "unavailable", "checks": checks},
                status=200 if ok else 503,
            )
        return self.get_response(request)


class MetricsMiddleware:
    """Answers `/metrics` on any host (before tenant resolution, like the probes) and
    times every other request by tenant and route."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from apps.core import metrics

        if request.path == "/metrics":
            return metrics.metrics_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        metrics.http_observe(request, response, time.perf_counter() - started)
        return response


class TenantLogContextMiddleware:
    """Puts the resolved tenant's schema into the log context."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        tenant_var.set(getattr(tenant, "schema_name", None))
        return self.get_response(request)


# host -> its tenant, filled by TenantByHostMiddleware.
_tenants_by_host: TrustCache[Any] = TrustCache("TENANT_HOST_CACHE_SECONDS")


def forget_tenant_hosts(**_: Any) -> None:
    """Forget every host -> tenant this process remembers (a tenant or a domain
    changed here; other processes follow within TENANT_HOST_CACHE_SECONDS)."""
    _tenants_by_host.forget()


post_save.connect(forget_tenant_hosts, sender="tenants.Organization")
post_delete.connect(forget_tenant_hosts, sender="tenants.Organization")
post_save.connect(forget_tenant_hosts, sender="tenants.Domain")
post_delete.connect(forget_tenant_hosts, sender="tenants.Domain")


class TenantByHostMiddleware(TenantMainMiddleware):
    """django-tenants' host -> schema selection, with the lookup remembered per
    process for TENANT_HOST_CACHE_SECONDS (0: every request queries it).

    The lookup is two round trips (the public search_path, then the domain joined
    to its tenant) on every request; tenants and domains change rarely. Unknown
    hosts are not remembered. Each host keeps its own tenant instance, since the
    middleware writes the host into it."""

    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        return _tenants_by_host.get_or_read(
            hostname,
            lambda: super(TenantByHostMiddleware, self).get_tenant(
                domain_model, hostname
            ),
        )
