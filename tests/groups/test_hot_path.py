# ruff: noqa: F811 - pytest fixtures imported from group_helpers are parameters here
"""What the predict path trusts without asking the database, and for how long: the
group's route and verified API keys; and the log row's one-round-trip commit."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, connection, connections
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context
from psycopg import sql

from apps.accounts.services import api_key_revoke
from apps.groups.services import group_set_status
from apps.groups.serving import group_route
from apps.tenants.demo import DEMO_GROUP, demo_rows
from tests.groups.group_helpers import demo_group  # noqa: F401


def _predict(client):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
    )


def test_a_fresh_route_is_used_without_a_query(settings, demo_group, in_alpha):
    settings.GROUP_ROUTE_TRUST_SECONDS = 60
    first = group_route(DEMO_GROUP)
    with CaptureQueriesContext(connection) as queries:
        again = group_route(DEMO_GROUP)
    assert again is first and len(queries) == 0


def test_without_trust_every_call_checks_the_routing_version(
    settings, demo_group, in_alpha
):
    settings.GROUP_ROUTE_TRUST_SECONDS = 0
    group_route(DEMO_GROUP)
    with CaptureQueriesContext(connection) as queries:
        group_route(DEMO_GROUP)
    selects = [q for q in queries if "groups_modelgroup" in q["sql"]]
    assert len(selects) == 1


def test_a_change_made_in_this_process_is_seen_at_once(settings, demo_group, in_alpha):
    settings.GROUP_ROUTE_TRUST_SECONDS = 60
    assert group_route(DEMO_GROUP).status == "active"
    group_set_status(group=demo_group, status="paused", actor="test")
    assert group_route(DEMO_GROUP).status == "paused"


def test_a_change_made_elsewhere_is_seen_once_the_trust_expires(
    settings, demo_group, in_alpha
):
    settings.GROUP_ROUTE_TRUST_SECONDS = 60
    assert group_route(DEMO_GROUP).status == "active"
    # Another process's change: the row moves, this process's route does not know.
    type(demo_group).objects.filter(pk=demo_group.pk).update(
        status="paused", routing_version=demo_group.routing_version + 5
    )
    assert group_route(DEMO_GROUP).status == "active"
    settings.GROUP_ROUTE_TRUST_SECONDS = 0
    assert group_route(DEMO_GROUP).status == "paused"


def test_a_verified_key_is_not_looked_up_again(
    settings, tenant_a, make_key, api_client, demo_group
):
    settings.API_KEY_CACHE_SECONDS = 60
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    assert _predict(client).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert _predict(client).status_code == 200
    assert not [q for q in queries if "accounts_apikey" in q["sql"]]


def test_a_revoked_key_is_refused_at_once_by_the_revoking_process(
    settings, tenant_a, make_key, api_client, demo_group
):
    settings.API_KEY_CACHE_SECONDS = 60
    api_key, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    assert _predict(client).status_code == 200
    with schema_context("alpha"):
        api_key_revoke(prefix=api_key.prefix, actor="test")
    refused = _predict(client)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "Invalid or revoked API key."


def test_a_key_revoked_in_the_admin_is_forgotten_too(
    settings, tenant_a, make_key, api_client, demo_group
):
    settings.API_KEY_CACHE_SECONDS = 60
    api_key, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    assert _predict(client).status_code == 200
    with schema_context("alpha"):
        api_key.revoked = True
        api_key.save()  # what the admin's change form does
    assert _predict(client).status_code == 401


def test_a_key_is_trusted_only_on_its_own_tenant(
    settings, tenant_a, tenant_b, make_key, api_client, demo_group
):
    settings.API_KEY_CACHE_SECONDS = 60
    _, key = make_key(tenant_a, scope="predict")
    assert _predict(api_client(tenant_a, key=key)).status_code == 200
    assert _predict(api_client(tenant_b, key=key)).status_code == 401


# --- the log row's commit ------------------------------------------------------------


@pytest.fixture
def scratch(django_db_setup, django_db_blocker):  # type: ignore[no-untyped-def]
    """A committed scratch table in the public schema, outside any test transaction."""
    from apps.core.db import raw_commit

    name = "writer_probe"
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
        try:
            statement = sql.SQL("INSERT INTO {} (id) VALUES (%s)").format(
                sql.Identifier("public", name)
            )
            yield lambda value: raw_commit(statement, [value])
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {name}")
            connection.close()


def _committed_ids() -> list[int]:
    db = connections["default"].settings_dict
    with psycopg.connect(
        dbname=db["NAME"], host=db["HOST"], user=db["USER"], port=db["PORT"] or None
    ) as other:
        return [r[0] for r in other.execute("SELECT id FROM writer_probe ORDER BY id")]


def test_the_log_row_is_committed_before_log_write_returns(scratch):
    scratch(1)
    scratch(2)
    assert _committed_ids() == [1, 2]
    # The session's own setting is untouched: SET LOCAL ended with the transaction.
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_a_failed_row_raises_a_database_error_and_leaves_the_connection_usable(
    scratch,
):
    scratch(1)
    with pytest.raises(DatabaseError):
        scratch(1)  # duplicate key
    assert (
        connection.connection.info.transaction_status
        == psycopg.pq.TransactionStatus.IDLE
    )
    scratch(2)
    assert _committed_ids() == [1, 2]
