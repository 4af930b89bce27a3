"""The prediction doors' per-caller throttle: a fixed window counted in the tenant's
schema, 429 with the envelope and Retry-After past the limit, per key and tenant."""

# ruff: noqa: F811 - pytest fixtures imported from group_helpers are parameters here
from __future__ import annotations

import pytest

from apps.accounts.throttling import PredictRateThrottle
from apps.tenants.demo import DEMO_GROUP, demo_rows
from tests.groups.group_helpers import demo_group  # noqa: F401

PREDICT = f"/api/v1/groups/{DEMO_GROUP}/predict/"


@pytest.fixture
def in_alpha(tenant_a):  # type: ignore[no-untyped-def]
    from django_tenants.utils import schema_context

    with schema_context("alpha"):
        yield


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


def _allow(ip: str, rate: str, monkeypatch) -> bool:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory
    from rest_framework.request import Request

    monkeypatch.setattr(PredictRateThrottle, "rate", rate, raising=False)
    request = Request(RequestFactory().post("/p", REMOTE_ADDR=ip))
    request.user = AnonymousUser()
    return PredictRateThrottle().allow_request(request, None)


def _hits(ip: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hits FROM accounts_throttlewindow WHERE ident = %s", [f"ip:{ip}"]
        )
        return cursor.fetchone()[0]


def test_a_busy_caller_leases_a_hundredth_of_its_budget_per_round_trip(
    tenant_a, monkeypatch, in_alpha
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ip = "10.9.9.1"
    assert _allow(ip, "1000/day", monkeypatch)
    assert _hits(ip) == 10  # one lease of 10 taken
    with CaptureQueriesContext(connection) as queries:
        assert all(_allow(ip, "1000/day", monkeypatch) for _ in range(9))
    assert len(queries) == 0 and _hits(ip) == 10  # spent locally
    assert _allow(ip, "1000/day", monkeypatch)
    assert _hits(ip) == 20  # the next lease


def test_leases_never_let_the_shared_budget_be_exceeded(
    tenant_a, monkeypatch, in_alpha
):
    from apps.accounts.throttling import _leases

    ip = "10.9.9.2"
    admitted = 0
    for _ in range(400):
        _leases.clear()  # as if every request reached another process
        admitted += _allow(ip, "250/day", monkeypatch)
    # each fresh process leases 2 and spends 1: the budget runs out early, never over
    assert 0 < admitted <= 250
