"""/metrics: protected, answered on any host, per-tenant filtered, and its prediction
counters agree with the inference tables."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context
from prometheus_client.parser import text_string_to_metric_families

from apps.tenants.demo import DEMO_GROUP, demo_rows, seed_demo_content

TOKEN = "scrape-token-for-tests"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label items: value} of one sample name."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def scrape(query: str = "", host: str = "public.test") -> str:
    response = Client(HTTP_HOST=host).get(
        f"/metrics{query}", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []


@pytest.fixture
def group(tenant_a, trained):
    from apps.groups.serving import clear_route_cache

    clear_route_cache()
    with schema_context("alpha"):
        yield seed_demo_content(actor="test")
    clear_route_cache()


def test_metrics_needs_the_token_or_an_allowed_network(db, settings):
    client = Client(HTTP_HOST="public.test")
    assert client.get("/metrics").status_code == 401
    bad = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "not_authenticated"
    assert bad["WWW-Authenticate"] == 'Bearer realm="metrics"'

    settings.METRICS_TOKEN = ""
    off = client.get("/metrics")
    assert off.status_code == 404
    assert "METRICS_TOKEN" in off.json()["error"]["message"]

    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200  # test client: 127.0.0.1
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 401


def test_metrics_answers_on_any_host_even_unknown_ones(db):
    text = scrape(host="no-such-tenant.example")
    assert "modelhub_queue_depth" in text
    assert scrape(host="alpha.test")


def test_prediction_counters_equal_the_inference_table_counts(
    group, make_key, api_client, tenant_a
):
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    for row in demo_rows(25):
        response = client.post(
            f"/api/v1/groups/{DEMO_GROUP}/predict/", {"inputs": row}, format="json"
        )
        assert response.status_code == 200, response.content
    bad = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/", {"inputs": {"x": 1}}, format="json"
    )
    assert bad.status_code == 400

    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT member_id, role, status, count(*) FROM inference_log_g{group.pk} "
            "GROUP BY 1, 2, 3"
        )
        table = {(str(m), role, status): n for m, role, status, n in cursor.fetchall()}
    assert sum(table.values()) == 25

    counted = {
        (dict(k)["member"], dict(k)["role"], dict(k)["status"]): v
        for k, v in samples(scrape(), "modelhub_predictions_total").items()
        if dict(k)["tenant"] == "alpha" and dict(k)["group"] == str(group.pk)
    }
    assert counted == table
    rows = samples(scrape(), "modelhub_inference_log_rows_total")
    written = (("group", str(group.pk)), ("outcome", "written"), ("tenant", "alpha"))
    assert rows[written] == 25
    latency = samples(scrape(), "modelhub_prediction_duration_seconds_count")
    assert sum(v for k, v in latency.items() if dict(k)["group"] == str(group.pk)) == 25
    http = samples(scrape(), "modelhub_http_requests_total")
    route = "api/v1/groups/<slug:slug>/predict/"
    by_status = {
        dict(k)["status"]: v
        for k, v in http.items()
        if dict(k)["tenant"] == "alpha" and dict(k)["route"] == route
    }
    assert by_status["200"] >= 25 and by_status["400"] >= 1


def test_tenant_filter_shows_only_that_tenants_series(
    group, make_key, api_client, tenant_a, tenant_b
):
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    response = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
    )
    assert response.status_code == 200

    everyone = scrape()
    assert 'tenant="alpha"' in everyone
    assert "modelhub_queue_depth" in everyone

    beta = scrape("?tenant=beta")
    assert 'tenant="alpha"' not in beta
    assert "modelhub_queue_depth" not in beta  # shared series: operator only
    alpha = scrape("?tenant=alpha")
    tenants = {
        s.labels["tenant"]
        for f in text_string_to_metric_families(alpha)
        for s in f.samples
    }
    assert tenants == {"alpha"}
    partitions = samples(alpha, "modelhub_inference_partitions_ahead")
    assert partitions[(("group", str(group.pk)), ("tenant", "alpha"))] >= 1

    unknown = Client(HTTP_HOST="public.test").get(
        "/metrics?tenant=nobody", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert unknown.status_code == 404


def test_breaker_state_comes_from_the_database(tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    from apps.providers.models import ProviderConfig

    with schema_context("alpha"):
        ProviderConfig.objects.create(
            name="flaky",
            kind="custom_http",
            base_url="http://127.0.0.1:9/",
            consecutive_failures=5,
            circuit_open_until=timezone.now() + timedelta(minutes=5),
        )
    text = scrape("?tenant=alpha")
    labels = (("kind", "custom_http"), ("provider", "flaky"), ("tenant", "alpha"))
    assert samples(text, "modelhub_provider_circuit_open")[labels] == 1
    assert samples(text, "modelhub_provider_consecutive_failures")[labels] == 5


def test_queue_depth_counts_waiting_and_taken_tasks(tenant_a):
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import OrmQ

    from apps.core.tasks import echo_schema, tenant_async

    OrmQ.objects.all().delete()
    with schema_context("alpha"):
        for _ in range(3):
            tenant_async(echo_schema, on_commit=False)
    taken = OrmQ.objects.order_by("id").first()
    OrmQ.objects.filter(pk=taken.pk).update(lock=timezone.now() + timedelta(minutes=5))

    depth = samples(scrape(), "modelhub_queue_depth")
    assert depth == {(("state", "waiting"),): 2, (("state", "taken"),): 1}
