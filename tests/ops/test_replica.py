"""Analytics reads on a read replica, tested with the replica alias pointing at the
primary (config/settings/test.py: "replica" is a test mirror of the test database,
reached through a second connection).

Two tenants of their own hold committed data (so the second connection sees it);
they are dropped at the end of the module. With ANALYTICS_DB_ALIAS = "replica":
the comparison API and page, the version Analytics tab, the dashboard and the
inference browser's list and CSV export run their SQL on the replica connection, in
the request's schema, with the same numbers as on the primary; predictions,
feedback, rollup refreshes and promotions never touch it; and no migration may run
on it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections, router
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from tests.groups.analytics_helpers import members_of, write_row
from tests.groups.group_helpers import demo_group  # noqa: F401
from tests.jobs.conftest import queue_cleanup

REPLICA = "replica"
PASSWORD = "replica-horse-battery"
# Rows per tenant: different, so that reading the other tenant's schema shows.
ROWS = {"replica_a": 12, "replica_b": 30}


@dataclass
class Tenant:
    schema: str
    host: str
    group_id: int
    group_slug: str
    model_slug: str
    version_ids: dict[str, int]
    request_ids: list[str]
    key: str
    admin_email: str


def _forget(schema: str) -> None:
    from apps.tenants.models import Organization
    from apps.tenants.services import tenant_delete

    connection.set_schema_to_public()
    queue_cleanup(schema)
    if Organization.objects.filter(schema_name=schema).exists():
        tenant_delete(slug=schema)
    shutil.rmtree(Path(django_settings.MEDIA_ROOT) / schema, ignore_errors=True)


def _make_tenant(schema: str, rows: int) -> Tenant:
    from apps.accounts.services import api_key_create
    from apps.groups.rollups import rollups_refresh
    from apps.tenants.demo import seed_demo_content
    from apps.tenants.services import tenant_create

    host = f"{schema.replace('_', '-')}.test"
    admin_email = f"admin@{host}"
    tenant_create(
        slug=schema,
        name=schema.title(),
        admin_email=admin_email,
        domains=[host],
        admin_password=PASSWORD,
    )
    with schema_context(schema):
        group = seed_demo_content(actor="test")
        members = members_of(group, schema=schema)
        _, key = api_key_create(name="replica-test", scope="manage", actor="test")
        model_slug = members["champion"].version.model.slug
        version_ids = {role: m.version_id for role, m in members.items()}
    # Every row in the past (and well inside the default 24-hour window), whatever
    # the minute of the hour the test runs at.
    start = timezone.now() - timedelta(minutes=7 * rows + 10)
    request_ids = []
    for i in range(rows):
        role = "champion" if i % 3 else "challenger"
        member = members[role]
        request_ids.append(
            write_row(
                group.pk,
                at=start + timedelta(minutes=7 * i),
                member_id=member.pk,
                version_id=member.version_id,
                role=role,
                latency_ms=10.0 + i,
                prediction=i % 2,
                status="ok" if i % 5 else "error",
                label=(i // 2) % 2 if i % 5 and i % 4 else None,
                schema=schema,
            )
        )
    with schema_context(schema):
        rollups_refresh(group=group)
    return Tenant(
        schema=schema,
        host=host,
        group_id=group.pk,
        group_slug=group.slug,
        model_slug=model_slug,
        version_ids=version_ids,
        request_ids=request_ids,
        key=key,
        admin_email=admin_email,
    )


@pytest.fixture(scope="module")
def tenants(
    django_db_setup: None,
    django_db_blocker: Any,
    trained: None,
) -> Iterator[dict[str, Tenant]]:
    """Two tenants with committed groups, rows and rollups; dropped afterwards."""
    made: dict[str, Tenant] = {}
    with django_db_blocker.unblock():
        try:
            for schema, rows in ROWS.items():
                _forget(schema)
                made[schema] = _make_tenant(schema, rows)
            yield made
        finally:
            # The replica connection holds no lock, but it must not outlive the
            # schemas (nor keep the test database open at its teardown).
            connections[REPLICA].close()
            for schema in ROWS:
                _forget(schema)


@pytest.fixture
def committed(tenants: dict[str, Tenant], django_db_blocker: Any) -> Iterator[None]:
    """Database access in autocommit, as in production: no test transaction, so
    the replica connection sees what the primary connection wrote."""
    with django_db_blocker.unblock():
        yield
        connection.set_schema_to_public()


@pytest.fixture
def on_replica(settings: Any) -> None:
    settings.ANALYTICS_DB_ALIAS = REPLICA


def _api(tenant: Tenant) -> Client:
    return Client(HTTP_HOST=tenant.host, HTTP_AUTHORIZATION=f"Api-Key {tenant.key}")


def _page(tenant: Tenant) -> Client:
    from django.contrib.auth.models import User

    client = Client(HTTP_HOST=tenant.host)
    with schema_context(tenant.schema):
        client.force_login(User.objects.get(email=tenant.admin_email))
    return client


def _captured(call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """(call's result, the SQL it ran on the replica connection)."""
    with CaptureQueriesContext(connections[REPLICA]) as captured:
        result = call()
        if hasattr(result, "streaming_content"):
            result.body = b"".join(result.streaming_content)
    return result, [q["sql"] for q in captured.captured_queries]


def _search_paths(queries: list[str]) -> set[str]:
    return {q for q in queries if q.startswith("SET search_path")}


def _reads(queries: list[str]) -> list[str]:
    return [q for q in queries if not q.startswith("SET search_path")]


def _comparison_url(tenant: Tenant) -> str:
    now = timezone.now()
    since = (now - timedelta(hours=24)).isoformat()
    return (
        f"/api/v1/groups/{tenant.group_slug}/comparison/"
        f"?since={since.replace('+', '%2B')}&until={now.isoformat().replace('+', '%2B')}"
    )


def _member_numbers(members: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return {
        m["member_id"]: (
            m["requests"],
            m["errors"],
            m["labelled"],
            m["correct"],
            m["p95_ms"],
            m["primary"]["value"],
        )
        for m in members
    }


# --- (a) the analytics reads run on the replica, with the primary's numbers --------


def test_comparison_api_reads_the_replica_with_the_primarys_numbers(
    tenants: dict[str, Tenant], committed: None, settings: Any
) -> None:
    tenant = tenants["replica_a"]
    url = _comparison_url(tenant)

    on_primary, primary_queries = _captured(lambda: _api(tenant).get(url))
    settings.ANALYTICS_DB_ALIAS = REPLICA
    on_replica, replica_queries = _captured(lambda: _api(tenant).get(url))

    assert on_primary.status_code == 200, on_primary.content
    assert on_replica.status_code == 200, on_replica.content
    assert primary_queries == []
    reads = _reads(replica_queries)
    assert any("groups_memberrollup" in q for q in reads)
    assert any("groups_membership" in q for q in reads)
    assert on_replica.json() == on_primary.json()
    assert sum(m["requests"] for m in on_replica.json()["members"]) == ROWS["replica_a"]


def test_comparison_page_reads_the_replica_with_the_primarys_numbers(
    tenants: dict[str, Tenant], committed: None, settings: Any
) -> None:
    tenant = tenants["replica_a"]
    url = f"/groups/{tenant.group_slug}/comparison/?range=24h"
    client = _page(tenant)

    on_primary, primary_queries = _captured(lambda: client.get(url))
    settings.ANALYTICS_DB_ALIAS = REPLICA
    on_replica, replica_queries = _captured(lambda: client.get(url))

    assert on_primary.status_code == on_replica.status_code == 200
    assert primary_queries == []
    reads = _reads(replica_queries)
    assert any("groups_memberrollup" in q for q in reads)
    # The secondary metrics read the labelled raw rows there too.
    assert any(f"inference_log_g{tenant.group_id}" in q for q in reads)
    assert _member_numbers(on_replica.context["cmp"]["members"]) == _member_numbers(
        on_primary.context["cmp"]["members"]
    )
    assert (
        on_replica.context["cmp"]["verdicts"] == on_primary.context["cmp"]["verdicts"]
    )
    assert on_replica.context["total_requests"] == ROWS["replica_a"]


def test_version_analytics_tab_reads_the_replica_with_the_primarys_numbers(
    tenants: dict[str, Tenant], committed: None, settings: Any
) -> None:
    tenant = tenants["replica_a"]
    version_id = tenant.version_ids["champion"]
    url = f"/models/{tenant.model_slug}/versions/{version_id}/analytics/?range=24h"
    client = _page(tenant)

    on_primary, primary_queries = _captured(lambda: client.get(url))
    settings.ANALYTICS_DB_ALIAS = REPLICA
    on_replica, replica_queries = _captured(lambda: client.get(url))

    assert on_primary.status_code == on_replica.status_code == 200
    assert primary_queries == []
    reads = _reads(replica_queries)
    assert any("groups_memberrollup" in q for q in reads)
    assert any(f"inference_log_g{tenant.group_id}" in q for q in reads)
    assert any("registry_featureimportance" in q for q in reads)
    primary_va, replica_va = on_primary.context["va"], on_replica.context["va"]
    assert replica_va["total"]["requests"] == primary_va["total"]["requests"] > 0
    assert replica_va["total"]["errors"] == primary_va["total"]["errors"]
    assert replica_va["series"] == primary_va["series"]
    assert replica_va["secondary"] == primary_va["secondary"]
    assert on_replica.context["display"] == on_primary.context["display"]


def test_dashboard_glance_reads_the_replica_with_the_primarys_numbers(
    tenants: dict[str, Tenant], committed: None, settings: Any
) -> None:
    tenant = tenants["replica_a"]
    client = _page(tenant)

    def glance(response: Any) -> list[tuple[Any, ...]]:
        return [
            (g["group"].slug, g["requests"], g["errors"], g["p95"], g["verdicts"])
            for g in response.context["glance"]
        ]

    on_primary, primary_queries = _captured(lambda: client.get("/"))
    settings.ANALYTICS_DB_ALIAS = REPLICA
    on_replica, replica_queries = _captured(lambda: client.get("/"))

    assert on_primary.status_code == on_replica.status_code == 200
    assert primary_queries == []
    assert any("groups_memberrollup" in q for q in _reads(replica_queries))
    assert glance(on_replica) == glance(on_primary)
    assert glance(on_replica)[0][1] == ROWS["replica_a"]


def test_inference_browser_list_page_and_export_read_the_replica(
    tenants: dict[str, Tenant], committed: None, settings: Any
) -> None:
    tenant = tenants["replica_a"]
    table = f"inference_log_g{tenant.group_id}"
    api = f"/api/v1/groups/{tenant.group_slug}/inferences/?limit=500"
    export = f"/api/v1/groups/{tenant.group_slug}/inferences/export.csv"
    page = f"/inference/{tenant.group_slug}/"
    client = _api(tenant)
    pages = _page(tenant)

    primary = {
        "list": _captured(lambda: client.get(api)),
        "export": _captured(lambda: client.get(export)),
        "page": _captured(lambda: pages.get(page)),
    }
    settings.ANALYTICS_DB_ALIAS = REPLICA
    replica = {
        "list": _captured(lambda: client.get(api)),
        "export": _captured(lambda: client.get(export)),
        "page": _captured(lambda: pages.get(page)),
    }

    for name in primary:
        assert primary[name][0].status_code == 200, name
        assert replica[name][0].status_code == 200, name
        assert primary[name][1] == [], name
        assert any(table in q for q in _reads(replica[name][1])), name
    listed = [r["request_id"] for r in replica["list"][0].json()["results"]]
    assert listed == [r["request_id"] for r in primary["list"][0].json()["results"]]
    assert sorted(listed) == sorted(tenant.request_ids)
    assert replica["export"][0].body == primary["export"][0].body
    assert replica["export"][0].body.count(b"\n") == ROWS["replica_a"] + 1


# --- (b) the replica connection reads the request's schema, never another's -------


def test_replica_reads_each_requests_own_tenant_schema(
    tenants: dict[str, Tenant], committed: None, on_replica: None
) -> None:
    a, b = tenants["replica_a"], tenants["replica_b"]

    def requests_of(tenant: Tenant) -> tuple[int, list[str]]:
        response, queries = _captured(lambda: _api(tenant).get(_comparison_url(tenant)))
        assert response.status_code == 200, response.content
        return sum(m["requests"] for m in response.json()["members"]), queries

    # Alternating on one replica connection: each request re-points it.
    for tenant, other in ((b, a), (a, b), (b, a), (a, b)):
        total, queries = requests_of(tenant)
        assert total == ROWS[tenant.schema]
        paths = _search_paths(queries)
        assert paths, "the replica connection never set the tenant's search_path"
        assert all(tenant.schema in q and other.schema not in q for q in paths)

    # The browser of A via the replica lists A's rows and none of B's.
    response, _ = _captured(
        lambda: _api(a).get(f"/api/v1/groups/{a.group_slug}/inferences/?limit=500")
    )
    listed = {r["request_id"] for r in response.json()["results"]}
    assert listed == set(a.request_ids)
    assert not listed & set(b.request_ids)


def test_the_analytics_alias_follows_the_default_connections_schema(
    tenants: dict[str, Tenant], committed: None, on_replica: None
) -> None:
    from apps.core.db import analytics_alias

    for schema in ("replica_b", "replica_a", "replica_b"):
        with schema_context(schema):
            assert analytics_alias() == REPLICA
            with connections[REPLICA].cursor() as cursor:
                cursor.execute("SELECT current_schema()")
                assert cursor.fetchone()[0] == schema
                assert cursor.db.alias == REPLICA


# --- (c) writes and promotion decisions never touch the replica --------------------


@pytest.mark.django_db(databases=["default", REPLICA])
def test_predict_feedback_rollups_and_promotion_issue_no_query_on_the_replica(
    demo_group: Any,  # noqa: F811
    tenant_a: Any,
    make_key: Any,
    make_user: Any,
    api_client: Any,
    on_replica: None,
) -> None:
    from apps.groups.promotion import group_promote, promotion_evaluate
    from apps.groups.rollups import rollups_refresh
    from apps.tenants.demo import demo_rows

    _, key = make_key(tenant_a, scope="predict")
    machine = api_client(tenant_a, key=key)
    editor = api_client(tenant_a, user=make_user(tenant_a, "editor"))
    url = f"/api/v1/groups/{demo_group.slug}/"
    challenger = members_of(demo_group)["challenger"]

    with CaptureQueriesContext(connections[REPLICA]) as captured:
        predicted = machine.post(
            url + "predict/", {"inputs": demo_rows(3)}, format="json"
        )
        assert predicted.status_code == 200, predicted.content
        request_id = predicted.json()["request_id"]
        feedback = machine.post(
            url + "feedback/", {"request_id": request_id, "label": 1}, format="json"
        )
        assert feedback.status_code in (200, 207), feedback.content
        with schema_context("alpha"):
            rollups_refresh(group=demo_group)
            decision = promotion_evaluate(group=demo_group)
        assert decision.action in ("hold", "promote", "rollback")
        dry = editor.post(
            url + "promote/",
            {"member_id": challenger.pk, "dry_run": True},
            format="json",
        )
        assert dry.status_code == 200, dry.content
        promoted = editor.post(
            url + "promote/", {"member_id": challenger.pk}, format="json"
        )
        assert promoted.status_code == 201, promoted.content
        with schema_context("alpha"):
            demo_group.refresh_from_db()
            group_promote(
                group=demo_group,
                member=members_of(demo_group)["challenger"].pk,
                actor="test",
            )

    assert captured.captured_queries == []


# --- (d) migrations never run on the replica ---------------------------------------


def test_no_migration_may_run_on_the_replica() -> None:
    from django.apps import apps

    assert "django_tenants.routers.TenantSyncRouter" in django_settings.DATABASE_ROUTERS
    for app in apps.get_app_configs():
        assert router.allow_migrate(REPLICA, app.label) is False, app.label
        for model in app.get_models():
            assert router.allow_migrate_model(REPLICA, model) is False
    # The primary still migrates the shared apps (the public schema is current).
    assert router.allow_migrate("default", "tenants") is not False


def test_without_a_replica_analytics_read_the_primary() -> None:
    from apps.core.db import analytics_alias

    assert django_settings.ANALYTICS_DB_ALIAS == "default"
    assert analytics_alias() == "default"
