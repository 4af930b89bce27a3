"""The one way to run background work in a tenant.

`tenant_async(func, *args)` captures the current schema and enqueues, after the
surrounding transaction commits, a django-q2 task that re-enters that schema in the
worker. A task without a schema, or with the public schema, fails loudly and never
runs its function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.utils.module_loading import import_string
from django_q.tasks import async_task
from django_tenants.utils import get_public_schema_name, schema_context

from apps.core.context import current_request_id, request_id_var, tenant_var
from apps.core.db import current_schema

logger = logging.getLogger(__name__)


class TenantContextError(RuntimeError):
    """A tenant task arrived without a usable schema."""


def _dotted(func: Callable[..., Any] | str) -> str:
    if isinstance(func, str):
        return func
    return f"{func.__module__}.{func.__qualname__}"


def tenant_async(
    func: Callable[..., Any] | str,
    *args: Any,
    schema_name: str | None = None,
    on_commit: bool = True,
    **kwargs: Any,
) -> str | None:
    """Enqueue `func(*args, **kwargs)` to run in the current (or given) tenant schema.

    Arguments must be ids and plain values, never secrets or model instances.
    Returns the task id, or None when enqueueing waits for the transaction to commit.
    """
    schema = schema_name or current_schema()
    if not schema or schema == get_public_schema_name():
        raise TenantContextError(
            f"refusing to enqueue {_dotted(func)} without a tenant"
        )
    path = _dotted(func)
    request_id = current_request_id()

    def enqueue() -> str:
        return async_task(
            "apps.core.tasks.run_in_tenant",
            schema,
            path,
            *args,
            request_id=request_id,
            task_name=f"{schema}:{path.rsplit('.', 1)[-1]}",
            **kwargs,
        )

    if on_commit:
        transaction.on_commit(enqueue)
        return None
    return enqueue()


def run_in_tenant(
    schema_name: str | None,
    func_path: str,
    *args: Any,
    request_id: str | None = None,
    **kwargs: Any,
) -> Any:
    """Worker side: re-enter the schema, then call the function."""
    if not schema_name or schema_name == get_public_schema_name():
        raise TenantContextError(f"task {func_path} has no tenant schema; not run")
    func = import_string(func_path)
    rid_token = request_id_var.set(request_id)
    tenant_token = tenant_var.set(schema_name)
    try:
        with schema_context(schema_name):
            return func(*args, **kwargs)
    finally:
        request_id_var.reset(rid_token)
        tenant_var.reset(tenant_token)


def echo_schema(marker: str = "") -> dict[str, str]:
    """A diagnostic task: reports the schema and search_path it ran under."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        search_path = cursor.fetchone()[0]
    return {"schema": current_schema(), "search_path": search_path, "marker": marker}
