"""A version's Analytics tab: every number equals SQL over the inference tables for
the window; the range selector (presets, custom, htmx fragment); empty states; global
SHAP importance; roles and tenant isolation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.urls import URLResolver, include, path
from django.utils.dateparse import parse_datetime
from django_tenants.utils import schema_context

from apps.groups import stats
from apps.groups.display import metric_text, rate
from tests.groups.analytics_helpers import members_of, write_row
from tests.groups.analytics_helpers import urlpatterns as analytics_urlpatterns
from tests.groups.group_helpers import demo_group  # noqa: F401
from tests.registry.model_helpers import model_in, version_in

_WIRED = any(
    isinstance(p, URLResolver) and p.namespace == "version_analytics"
    for p in analytics_urlpatterns
)
# Until config/urls_tenants.py includes the page: the same include, first.
urlpatterns = [
    *(
        []
        if _WIRED
        else [path("models/", include("apps.registry.analytics_page_urls"))]
    ),
    *analytics_urlpatterns,
]
handler404 = "apps.core.errors.handler404"


@pytest.fixture
def wired(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__


def _url(group: Any, version_id: int, query: str = "range=24h") -> str:
    with schema_context("alpha"):
        from apps.registry.models import ModelVersion

        slug = (
            ModelVersion.objects.select_related("model").get(pk=version_id).model.slug
        )
    return f"/models/{slug}/versions/{version_id}/analytics/?{query}"


def _kpis(html: str) -> dict[str, str]:
    block = re.search(r'<dl class="va-kpis">(.*?)</dl>', html, re.S).group(1)
    return dict(re.findall(r'data-va="(\w+)">([^<]*)<', block))


def _window(html: str) -> tuple[datetime, datetime]:
    found = re.search(r'data-since="([^"]+)" data-until="([^"]+)"', html)
    return parse_datetime(found.group(1)), parse_datetime(found.group(2))


def _sql(group_ids: Any, version_id: int, since: datetime, until: datetime) -> dict:
    """The version's numbers over [since, until), straight from its groups' tables."""
    ids = [group_ids] if isinstance(group_ids, int) else list(group_ids)
    rows = " UNION ALL ".join(
        f"SELECT ts, status, latency_ms, output, feedback "
        f"FROM inference_log_g{int(g)} WHERE version_id = %s AND ts >= %s AND ts < %s"
        for g in ids
    )
    table = f"({rows}) AS v"
    args = [version_id, since, until] * len(ids)
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status <> 'ok'), "
            f"count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label'), "
            f"count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label' "
            f"AND output->>'prediction' = feedback->>'label'), "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), "
            f"percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms), "
            f"avg(latency_ms) FROM {table}",
            args,
        )
        row = cursor.fetchone()
        cursor.execute(
            f"SELECT date_trunc('hour', ts), count(*), "
            f"count(*) FILTER (WHERE status <> 'ok') FROM {table} "
            f"GROUP BY 1 ORDER BY 1",
            args,
        )
        hourly = {h: (n, e) for h, n, e in cursor.fetchall()}
        cursor.execute(
            f"SELECT feedback->>'label', output->>'prediction' FROM {table} "
            f"WHERE status = 'ok' AND feedback ? 'label' ORDER BY ts",
            args,
        )
        pairs = cursor.fetchall()
    keys = ("requests", "errors", "labelled", "correct", "p50", "p95", "p99", "mean")
    return {**dict(zip(keys, row, strict=True)), "hourly": hourly, "pairs": pairs}


def _traffic(group: Any) -> None:
    """Rows 1, 2 and 5 hours ago for both members, errors and labels included, and
    one row 3 days ago that a 24 h window must not count."""
    m = members_of(group)
    now = datetime.now(UTC)
    for hours_ago in (1, 2, 5):
        base = now - timedelta(hours=hours_ago)
        for i in range(10):
            for role, member in m.items():
                if role == "challenger" and i >= 3:
                    continue
                write_row(
                    group.pk,
                    at=base + timedelta(seconds=i),
                    member_id=member.pk,
                    version_id=member.version_id,
                    role=role,
                    latency_ms=7.0 * (1 + i) + hours_ago,
                    status="error" if i in (8, 9) and hours_ago != 5 else "ok",
                    prediction=1,
                    label=(1 if i % 3 else 0) if i < 7 else None,
                )
    champion = m["champion"]
    write_row(
        group.pk,
        at=now - timedelta(days=3),
        member_id=champion.pk,
        version_id=champion.version_id,
        role="champion",
        latency_ms=1.0,
    )


def _assert_matches_sql(html: str, group: Any, version_id: int, *more: int) -> dict:
    since, until = _window(html)
    sql = _sql([group.pk, *more], version_id, since, until)
    kpis = _kpis(html)
    assert int(kpis["requests"]) == sql["requests"]
    assert int(kpis["errors"]) == sql["errors"]
    assert int(kpis["labelled"]) == sql["labelled"]
    assert kpis["error_rate"] == rate(
        stats.wilson_interval(sql["errors"], sql["requests"]).as_dict()
    )
    assert kpis["mean_ms"] == f"{sql['mean']:.1f} ms"
    # Percentiles come from the rollups' histogram: within one bucket of SQL's.
    for key in ("p50", "p95", "p99"):
        shown = float(kpis[f"{key}_ms"].split()[0])
        assert sql[key] / stats.LATENCY_RATIO - 0.05 <= shown
        assert shown <= sql[key] * stats.LATENCY_RATIO + 0.05
    # The table beside the charts: requests and errors per hour.
    rows = re.findall(
        r'<tr data-hour="([^"]+)">.*?data-va="requests">(\d+)<.*?'
        r'data-va="errors">(\d+)<',
        html,
        re.S,
    )
    shown_hourly = {parse_datetime(h): (int(n), int(e)) for h, n, e in rows}
    assert shown_hourly == sql["hourly"]
    return sql


def test_every_number_equals_sql_over_the_inference_table(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    _traffic(demo_group)
    version_id = members_of(demo_group)["champion"].version_id
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    response = client.get(_url(demo_group, version_id))

    assert response.status_code == 200
    html = response.content.decode()
    since, until = _window(html)
    assert until - since in (timedelta(hours=24), timedelta(hours=25))
    sql = _assert_matches_sql(html, demo_group, version_id)
    assert sql["requests"] == 30
    assert sql["errors"] == 4
    assert len(sql["hourly"]) == 3
    y_true = [label for label, _ in sql["pairs"]]
    y_pred = [pred for _, pred in sql["pairs"]]
    outcome = re.search(r'<section class="va-outcome">(.*?)</section>', html, re.S)
    accuracy = stats.wilson_interval(sql["correct"], sql["labelled"])
    shown = metric_text(accuracy.as_dict(), "accuracy")
    assert f'data-va="accuracy">{shown}<' in outcome.group(1)
    # Secondary metrics live in <details>, computed from the labelled raw rows.
    assert "<details><summary>More outcome metrics" in outcome.group(1)
    for name, estimate in (
        ("precision", stats.precision(y_true, y_pred)),
        ("recall", stats.recall(y_true, y_pred)),
        ("f1", stats.f1(y_true, y_pred)),
    ):
        assert f'data-va="{name}">{metric_text(estimate.as_dict(), name)}<' in html
    assert "See all metrics" not in html
    assert html.count('role="img" aria-label=') == 3  # the three charts
    assert "placeholder" not in html.lower()


def test_a_version_in_two_groups_adds_up_both_tables(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    from apps.groups.services import group_create, members_set
    from apps.inference.tables import provision

    _traffic(demo_group)
    version_id = members_of(demo_group)["champion"].version_id
    with schema_context("alpha"):
        second = group_create(name="Second opinion", actor="test")
        (member,) = members_set(
            group=second,
            members=[{"version_id": version_id, "role": "champion", "weight": 100}],
            actor="test",
        )
        provision(second.pk)
    now = datetime.now(UTC)
    for i in range(5):
        write_row(
            second.pk,
            at=now - timedelta(minutes=20, seconds=i),
            member_id=member.pk,
            version_id=version_id,
            role="champion",
            latency_ms=100.0 + i,
            status="error" if i == 0 else "ok",
        )
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = client.get(_url(demo_group, version_id)).content.decode()

    sql = _assert_matches_sql(html, demo_group, version_id, second.pk)
    assert (sql["requests"], sql["errors"]) == (35, 5)
    groups = re.search(r'<details class="va-groups">(.*?)</details>', html, re.S)
    assert "Second opinion" in groups.group(1)
    assert demo_group.name in groups.group(1)


def test_range_selector_narrows_the_window_and_htmx_gets_the_fragment(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    _traffic(demo_group)
    version_id = members_of(demo_group)["challenger"].version_id
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = client.get(
        _url(demo_group, version_id, "range=1h"), HTTP_HX_REQUEST="true"
    ).content.decode()

    assert "<html" not in html
    assert html.startswith(f'<div id="va-{version_id}"')
    since, until = _window(html)
    assert until - since in (timedelta(hours=1), timedelta(hours=2))
    sql = _assert_matches_sql(html, demo_group, version_id)
    assert sql["requests"] == 3  # only the rows one hour ago
    assert 'aria-current="page">1h<' in html

    week = client.get(_url(demo_group, version_id, "range=7d")).content.decode()
    assert "<html" in week
    _assert_matches_sql(week, demo_group, version_id)

    now = datetime.now(UTC)
    start = (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    end = now.strftime("%Y-%m-%dT%H:%M")
    custom = client.get(
        _url(demo_group, version_id, f"range=custom&since={start}&until={end}"),
        HTTP_HX_REQUEST="true",
    ).content.decode()
    since, until = _window(custom)
    assert since == (now - timedelta(hours=3)).replace(
        minute=0, second=0, microsecond=0
    )
    assert _assert_matches_sql(custom, demo_group, version_id)["requests"] == 6

    bad = client.get(
        _url(demo_group, version_id, f"range=custom&since={end}&until={start}"),
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "The custom range must start before it ends." in bad
    since, until = _window(bad)
    assert until - since in (timedelta(hours=24), timedelta(hours=25))


def test_importance_and_empty_states(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    from apps.inference.importance import importance_add

    version_id = members_of(demo_group)["champion"].version_id
    with schema_context("alpha"):
        importance_add(
            version_id,
            [
                {"values": {"radius": 0.5, "texture": -0.1}},
                {"values": {"radius": -0.3}},
            ],
        )
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = client.get(_url(demo_group, version_id)).content.decode()

    assert "No requests reached this version in this window." in html
    assert 'data-va="requests"' not in html  # no numbers without traffic
    bars = re.findall(
        r'<li data-feature="(\w+)">.*?<span class="small">([^<]+)</span>', html, re.S
    )
    assert bars == [("radius", "0.4000"), ("texture", "0.0500")]  # absent counts as 0
    assert "over 2 explained inferences" in html

    model = model_in(tenant_a, "Lonely model")
    version = version_in(tenant_a, model)
    lonely = client.get(
        f"/models/{model.slug}/versions/{version.pk}/analytics/"
    ).content.decode()
    assert "This version serves in no group yet" in lonely
    assert "No explained inferences yet." in lonely


def test_model_page_loads_the_tab_by_htmx(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    version_id = members_of(demo_group)["champion"].version_id
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))
    url = _url(demo_group, version_id)
    slug = url.split("/")[2]

    html = client.get(f"/models/{slug}/").content.decode()

    assert f'hx-get="{url}"' in html
    assert 'hx-trigger="intersect once"' in html


def test_another_tenants_version_is_404_and_strangers_are_sent_to_login(
    demo_group,  # noqa: F811
    tenant_a,
    tenant_b,
    make_user,
    page_client,
    wired,
):
    model = model_in(tenant_b, "Beta only")
    beta_version = version_in(tenant_b, model)
    with schema_context("alpha"):
        from apps.registry.models import ModelVersion

        assert not ModelVersion.objects.filter(pk=beta_version.pk).exists()
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))
    alpha_slug = _url(demo_group, members_of(demo_group)["champion"].version_id)
    alpha_slug = alpha_slug.split("/")[2]

    for slug in (model.slug, alpha_slug):
        response = viewer.get(f"/models/{slug}/versions/{beta_version.pk}/analytics/")
        assert response.status_code == 404

    anonymous = page_client(tenant_a)
    response = anonymous.get(
        _url(demo_group, members_of(demo_group)["champion"].version_id)
    )
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
