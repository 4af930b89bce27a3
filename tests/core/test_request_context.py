"""Request ids, JSON logs with request id and tenant, health probes."""

import json
import logging
import uuid

import pytest
from django.test import Client

from apps.core.context import request_id_var, tenant_var
from apps.core.logging import ContextFilter, JsonFormatter


def test_request_id_is_a_new_uuid7_when_the_caller_sends_none(tenant_a, api_client):
    response = api_client(tenant_a).get("/api/v1/me/")

    rid = uuid.UUID(response["X-Request-ID"])
    assert rid.version == 7
    assert response.json()["request_id"] == str(rid)


def test_callers_request_id_is_honoured_and_junk_is_replaced(tenant_a, api_client):
    client = api_client(tenant_a)

    kept = client.get("/api/v1/me/", HTTP_X_REQUEST_ID="trace-abc.123")
    junk = client.get("/api/v1/me/", HTTP_X_REQUEST_ID="<script>alert(1)</script>")

    assert kept["X-Request-ID"] == "trace-abc.123"
    assert uuid.UUID(junk["X-Request-ID"]).version == 7


def test_log_lines_are_json_with_request_id_and_tenant():
    handler_filter = ContextFilter()
    formatter = JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level"},
        timestamp="time",
    )
    record = logging.LogRecord(
        "apps.x", logging.INFO, __file__, 1, "hello %s", ("you",), None
    )
    rid_token, tenant_token = request_id_var.set("rid-1"), tenant_var.set("alpha")
    try:
        handler_filter.filter(record)
    finally:
        request_id_var.reset(rid_token)
        tenant_var.reset(tenant_token)

    line = json.loads(formatter.format(record))

    assert line["message"] == "hello you"
    assert line["request_id"] == "rid-1" and line["tenant"] == "alpha"
    assert line["level"] == "INFO" and "time" in line


def test_django_request_log_line_carries_the_request_id_and_tenant(
    tenant_a, api_client, caplog
):
    handler_filter = ContextFilter()
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = api_client(tenant_a).get("/api/v1/me/")
    record = next(r for r in caplog.records if r.name == "django.request")
    handler_filter.filter(record)

    assert record.request_id == response["X-Request-ID"]
    assert record.tenant == "alpha"


@pytest.mark.parametrize("host", ["alpha.test", "unknown.test", "10.1.2.3"])
def test_health_probes_answer_on_any_host(db, host):
    client = Client(HTTP_HOST=host)

    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok"},
    }
