"""The prediction doors' per-caller throttle: a fixed window counted in the tenant's
schema, 429 with the envelope and Retry-After past the limit, per key and tenant."""

# ruff: noqa: F811 - pytest fixtures imported from group_helpers are parameters here
from __future__ import annotations

import pytest

from apps.accounts.throttling import PredictRateThrottle
from apps.tenants.demo import DEMO_GROUP, demo_rows
from tests.groups.group_helpers import demo_group, trained  # noqa: F401

PREDICT = f"/api/v1/groups/{DEMO_GROUP}/predict/"


@pytest.fixture
def three_a_minute(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(PredictRateThrottle, "rate", "3/min", raising=False)
    clock = {"now": 1_000_040.0}  # 20 s into a minute (1,000,020 is one)
    monkeypatch.setattr(PredictRateThrottle, "timer", lambda self: clock["now"])
    return clock


def _predict(client):  # type: ignore[no-untyped-def]
    return client.post(PREDICT, {"inputs": demo_rows(1)[0]}, format="json")


def test_past_the_limit_a_caller_gets_429_until_the_next_window(
    tenant_a, make_key, api_client, demo_group, three_a_minute
):
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    assert [_predict(client).status_code for _ in range(3)] == [200, 200, 200]
    refused = _predict(client)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert refused["Retry-After"] == "40"  # the rest of the minute
    three_a_minute["now"] += 40  # the next window
    assert _predict(client).status_code == 200


def test_each_key_and_each_tenant_has_its_own_budget(
    tenant_a, tenant_b, make_key, api_client, demo_group, three_a_minute
):
    _, first = make_key(tenant_a, scope="predict")
    _, second = make_key(tenant_a, scope="predict")
    for _ in range(3):
        _predict(api_client(tenant_a, key=first))
    assert _predict(api_client(tenant_a, key=first)).status_code == 429
    assert _predict(api_client(tenant_a, key=second)).status_code == 200
    # Tenant B's counters live in B's schema: A's spent budget is invisible there.
    from django.db import connection
    from django_tenants.utils import schema_context

    with schema_context("beta"), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_throttlewindow")
        assert cursor.fetchone()[0] == 0
