"""Helpers for the retention tests: an active group, rows placed in past days, and a
URLconf that mounts the archive routes the way config.api_urls and
config.urls_tenants will (namespace "api" for the API, "archives" for the page)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.urls import include, path
from psycopg import sql

from apps.core.context import new_request_id
from apps.core.db import current_schema
from apps.groups.services import group_create, group_set_status, members_set
from apps.inference import tables
from apps.inference.api import archive_urls
from apps.inference.writer import log_write
from apps.providers.services import provider_create
from apps.registry.services import model_import
from config import api_urls, urls_tenants


def active_group(slug: str, retention_days: int = 30):  # type: ignore[no-untyped-def]
    """An active group (so its inference table exists) in the current schema."""
    provider = provider_create(
        actor="t",
        name=f"p-{slug}",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="sk-x-12345678",
    )
    version = model_import(provider=provider, external_id="m", actor="t").version_id
    group = group_create(name=slug, slug=slug, actor="t")
    members_set(
        group=group,
        actor="t",
        members=[{"version_id": version, "role": "champion", "weight": 100}],
    )
    group = group_set_status(group=group, status="active", actor="t")
    if retention_days != group.retention_days:
        type(group).objects.filter(pk=group.pk).update(retention_days=retention_days)
        group.refresh_from_db()
    return group


def today_utc() -> date:
    return datetime.now(UTC).date()


def past_day(group_id: int, days_ago: int) -> date:
    """Create the partition of the day `days_ago` days back; returns the day."""
    day = today_utc() - timedelta(days=days_ago)
    # ensure_partitions parks rows in an ON COMMIT DROP temp table: it needs a
    # transaction around it (autocommit drops the table before its next statement).
    with transaction.atomic():
        tables.ensure_partitions(group_id, today=day, ahead=0)
    return day


def log_rows(group_id: int, day: date, count: int, **extra) -> list[str]:  # type: ignore[no-untyped-def]
    """`count` rows at noon (+i seconds) of `day`; returns their request ids."""
    ids = []
    for i in range(count):
        rid = new_request_id()
        log_write(
            group_id,
            {
                "request_id": rid,
                "ts": datetime.combine(day, time(12), tzinfo=UTC)
                + timedelta(seconds=i),
                "status": "ok",
                "latency_ms": 10.5 + i,
                "input": {"x": i, "day": f"{day}"},
                "output": {"y": i * 2},
                "role": "champion",
                **extra,
            },
        )
        ids.append(rid)
    return ids


def bulk_rows(group_id: int, day: date, count: int) -> None:
    """Many rows in one statement (volume for the concurrency test)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "INSERT INTO {} (request_id, ts, status, input) "
                "SELECT gen_random_uuid(), %s + i * interval '1 second', 'ok', "
                "jsonb_build_object('i', i) FROM generate_series(1, %s) i"
            ).format(sql.Identifier(current_schema(), tables.table_name(group_id))),
            [datetime.combine(day, time(0), tzinfo=UTC), count],
        )


def logged_ids(group_id: int) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT request_id::text FROM {}").format(
                sql.Identifier(current_schema(), tables.table_name(group_id))
            )
        )
        return {row[0] for row in cursor.fetchall()}


# --- URLconf for @pytest.mark.urls("tests.inference.retention_helpers") -----------

handler400 = urls_tenants.handler400
handler403 = urls_tenants.handler403
handler404 = urls_tenants.handler404
handler500 = urls_tenants.handler500

# First match wins, for paths and for namespaces: these come before the tenant
# routes, so the result is the same whether or not the lead has mounted them yet.
urlpatterns = [
    path(
        "api/v1/",
        include(([*archive_urls.urlpatterns, *api_urls.urlpatterns], "api")),
    ),
    path("", include("apps.inference.archive_page_urls")),
    *urls_tenants.urlpatterns,
]
