"""Typed access to the tenant state django-tenants keeps on the connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django_tenants.utils import get_public_schema_name
from psycopg import ClientCursor, sql
from psycopg.pq import TransactionStatus

logger = logging.getLogger(__name__)


def current_schema(db: Any = None) -> str:
    """The schema the default connection (or `db`, the same connection already
    looked up) is bound to right now."""
    name = getattr(connection if db is None else db, "schema_name", None)
    return get_public_schema_name() if name is None else str(name)


def libpq_params(alias: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """The parameters Django connects `alias` with, for a psycopg connection of its
    own (one that Django's connection handling must not touch)."""
    params = connections[alias].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return params


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


def rendered(statement: sql.Composable) -> bytes:
    """A composed statement as the bytes psycopg would send, for a cache.

    psycopg renders a `Composed` on every execute (each identifier and placeholder,
    about 0.1 ms for the 21 columns of a log row); bytes skip that, and their
    placeholders are parsed once by psycopg's own query cache. Schema and table names
    are quoted here as PostgreSQL expects, without a connection (UTF-8)."""
    return statement.as_bytes(None)


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


@dataclass(frozen=True)
class _Later:
    statement: Any
    params: Any
    # The same write as a spool line can carry it (see `spooled_later`), or None.
    spooled: str | None = None


# Statements waiting to be committed with the next raw_commit of the same block
# (see writes_together); None outside such a block.
_later: ContextVar[list[_Later] | None] = ContextVar("later", default=None)


@contextmanager
def writes_together() -> Iterator[None]:
    """Inside this block, `raw_commit(..., later=True)` waits and goes out in the
    transaction of the next plain `raw_commit` (one round trip for both); whatever
    still waits when the block ends is committed then. A prediction's provider usage
    counter travels with its log row this way (or in its spool line: spooled_later)."""
    waiting: list[_Later] = []
    token = _later.set(waiting)
    try:
        yield
    except BaseException:
        _later.reset(token)
        if waiting:
            try:
                _commit(waiting)
            except Exception:  # the caller's own error is the one to report
                logger.warning("writes left over after an error were not committed")
        raise
    _later.reset(token)
    if waiting:
        _commit(waiting)


def raw_commit(
    statement: Any,
    params: Any = None,
    *,
    later: bool = False,
    spooled: str | None = None,
) -> None:
    """Run one write in a transaction of its own, sent in one round trip.

    BEGIN, the statement and COMMIT go out together as one query string on the
    request's connection, like `raw_execute` without django-tenants' search_path
    round trip: the statement must name its schema. Unless
    `INFERENCE_LOG_SYNCHRONOUS_COMMIT` is "on", the commit does not wait for the WAL
    flush (`SET LOCAL synchronous_commit`, this transaction only). Inside a caller's
    transaction the statement simply joins it. `later`: inside `writes_together`,
    wait for the block's next commit instead; `spooled` is then the same write in
    the form a log row's spool line carries (spooled_later)."""
    waiting = _later.get()
    if later and waiting is not None:
        waiting.append(_Later(statement, params, spooled))
        return
    earlier = list(waiting or ())
    statements = [*earlier, _Later(statement, params)]
    if waiting:
        waiting.clear()
    try:
        _commit(statements)
    except BaseException:
        if waiting is not None:  # not lost with this statement: the next commit's
            waiting[:0] = earlier
        raise


def spooled_later() -> list[str] | None:
    """The spool forms of the writes waiting in this `writes_together` block, when
    every one has one (None otherwise, or outside a block): a log row's spool line
    may carry them, and then the drain commits them in the row's own transaction
    (exactly once, as the row). Call `forget_later()` once the line is written."""
    waiting = _later.get()
    if not waiting or any(w.spooled is None for w in waiting):
        return None
    return [w.spooled for w in waiting]  # type: ignore[misc]


def forget_later() -> None:
    """The waiting writes went into a spool line: they are no longer this block's."""
    waiting = _later.get()
    if waiting:
        waiting.clear()


def _commit(statements: list[_Later]) -> None:
    if connection.in_atomic_block:
        # A savepoint: a failed write (a request id taken) leaves the caller's
        # transaction usable, as it leaves the request's connection outside one.
        with transaction.atomic(), connection.cursor() as cursor:
            for write in statements:
                cursor.execute(write.statement, write.params)
        return
    # One query string, sent and answered in one message each way: psycopg's
    # client-side binding runs several statements in one execute (cheaper than a
    # pipeline of four extended-protocol statements).
    parts = [b"BEGIN"]
    if settings.INFERENCE_LOG_SYNCHRONOUS_COMMIT != "on":
        parts.append(b"SET LOCAL synchronous_commit TO OFF")
    values: list[Any] = []
    for write in statements:
        parts.append(_as_bytes(write.statement))
        values.extend(write.params or ())
    parts.append(b"COMMIT")
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with connection.wrap_database_errors:
        try:
            with ClientCursor(raw) as cursor:
                cursor.execute(b"; ".join(parts), values)
        except BaseException:
            # A failed statement leaves the transaction aborted: end it, so the
            # connection is usable again for the rest of the request.
            if not raw.closed and raw.info.transaction_status != TransactionStatus.IDLE:
                raw.rollback()
            raise


def _as_bytes(statement: Any) -> bytes:
    if isinstance(statement, bytes):
        return statement
    if isinstance(statement, str):
        return statement.encode()
    return rendered(statement)
