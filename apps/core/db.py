"""Typed access to the tenant state django-tenants keeps on the connection."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django_tenants.utils import get_public_schema_name
from psycopg.pq import TransactionStatus


def current_schema() -> str:
    """The schema the default connection is bound to right now."""
    return str(getattr(connection, "schema_name", get_public_schema_name()))


def is_public_schema(schema_name: str | None = None) -> bool:
    name = current_schema() if schema_name is None else schema_name
    return name == get_public_schema_name()


def set_public_schema() -> None:
    connection.set_schema_to_public()  # type: ignore[attr-defined]


def assert_tenant_schema() -> str:
    """Refuse to go on in the public schema; returns the tenant schema name."""
    schema = current_schema()
    if is_public_schema(schema):
        raise RuntimeError("this operation needs a tenant schema, not public")
    return schema


def analytics_alias() -> str:
    """The database alias of analytics reads, bound to the current tenant.

    Comparisons, the version Analytics tab, the dashboard's groups at a glance and the
    inference browser's list and export read through this alias: a streaming replica
    when `DATABASE_REPLICA_URL` is set (settings.ANALYTICS_DB_ALIAS), else the primary.
    django-tenants sets the search_path only on the default connection, so the
    replica connection is pointed at the same schema here before every use; its
    cursors then issue the tenant's search_path like the default connection's do."""
    alias = str(getattr(settings, "ANALYTICS_DB_ALIAS", DEFAULT_DB_ALIAS))
    if alias != DEFAULT_DB_ALIAS:
        target = connections[alias]
        include_public = getattr(connection, "include_public_schema", True)
        if (
            getattr(target, "schema_name", None) != current_schema()
            or getattr(target, "include_public_schema", True) != include_public
        ):
            target.set_tenant(connection.tenant, include_public)  # type: ignore[attr-defined]
    return alias


def raw_execute(statement: Any, params: Any = None) -> Any:
    """Run one statement on the request's connection as psycopg sends it, without
    the search_path round trip django-tenants adds to every Django cursor: the
    statement must name its schema. Errors arrive as Django's database errors.
    Returns the psycopg cursor (fetch from it at once)."""
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with connection.wrap_database_errors:
        return raw.execute(statement, params)


def raw_commit(statement: Any, params: Any = None) -> None:
    """Run one write in a transaction of its own, sent in one round trip.

    BEGIN, the statement and COMMIT go out together (psycopg pipeline mode) on the
    request's connection, like `raw_execute` without django-tenants' search_path
    round trip: the statement must name its schema. Unless
    `INFERENCE_LOG_SYNCHRONOUS_COMMIT` is "on", the commit does not wait for the WAL
    flush (`SET LOCAL synchronous_commit`, this transaction only). Inside a caller's
    transaction the statement simply joins it."""
    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
        return
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with connection.wrap_database_errors:
        try:
            with raw.pipeline(), raw.cursor() as cursor:
                cursor.execute("BEGIN")
                if settings.INFERENCE_LOG_SYNCHRONOUS_COMMIT != "on":
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
                cursor.execute(statement, params)
                cursor.execute("COMMIT")
        except BaseException:
            # A failed statement leaves the transaction aborted: end it, so the
            # connection is usable again for the rest of the request.
            if not raw.closed and raw.info.transaction_status != TransactionStatus.IDLE:
                raw.rollback()
            raise
