"""The inference browser: filters against known rows, keyset pagination, CSV export,
the detail with its audit events and SHAP chart, tenant isolation, roles, and bad or
junk query strings (400 naming the filter, never 500)."""

from __future__ import annotations

import csv
import io
import math
import random
import re
import string
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.audit.services import audit_record
from apps.core.context import request_id_var
from apps.inference import selectors
from tests.inference.browser_helpers import (
    browser_wired,  # noqa: F401 (fixture)
    logged_group,
    uuid7_at,
    write_row,
)

pytestmark = pytest.mark.usefixtures("browser_wired")

API = "/api/v1/groups/{slug}/inferences/"
EXPLANATION = {
    "method": "tree",
    "output_space": "log_odds",
    "target": 1,
    "base_value": 0.5,
    "output": 0.5 + 1.5 - 0.75 + 0.125,
    "values": {"mean_radius": 1.5, "mean_texture": -0.75, "worst_area": 0.125},
}


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def group(tenant_a):
    return logged_group("alpha", "browse")


@pytest.fixture
def manage(tenant_a, make_key, api_client):
    _, key = make_key(tenant_a, scope="manage")
    return api_client(tenant_a, key=key)


@pytest.fixture
def viewer_page(tenant_a, make_user, page_client):
    return page_client(tenant_a, make_user(tenant_a, "viewer"))


@pytest.fixture
def known(group, now):
    """Six rows with chosen times and attributes; name -> request id. d is the
    shadow copy of e, written a minute after it."""
    at = {
        "a": now - timedelta(hours=1),
        "b": now - timedelta(hours=2),
        "c": now - timedelta(hours=3),
        "d": now - timedelta(days=3) + timedelta(minutes=1),
        "e": now - timedelta(days=3),
        "old": now - timedelta(days=10),
    }
    ids: dict[str, str] = {}
    ids["a"] = write_row(
        "alpha",
        group,
        at["a"],
        member_id=1,
        version_id=11,
        latency_ms=5.0,
        routing_key="alice",
        input={"text": "hello world"},
        output={"label": "spam"},
    )
    with schema_context("alpha"):
        from apps.inference.writer import feedback_write

        assert (
            feedback_write(group.pk, [{"request_id": ids["a"], "label": 1}])["updated"]
            == 1
        )
    ids["b"] = write_row(
        "alpha",
        group,
        at["b"],
        role="challenger",
        member_id=2,
        version_id=12,
        latency_ms=50.0,
        input={"text": "100% sure"},
        output={"label": "ham"},
        explanation=EXPLANATION,
    )
    ids["c"] = write_row(
        "alpha",
        group,
        at["c"],
        member_id=1,
        version_id=11,
        status="error",
        error_code="timeout",
        latency_ms=500.0,
        routing_key="bob",
        input={"text": "x"},
        output=None,
    )
    ids["e"] = write_row(
        "alpha",
        group,
        at["e"],
        member_id=1,
        version_id=11,
        latency_ms=7.0,
        client_request_id="caller-1",
        input={"text": "under_score"},
    )
    ids["d"] = write_row(
        "alpha",
        group,
        at["d"],
        role="shadow",
        shadow=True,
        member_id=3,
        version_id=13,
        latency_ms=20.0,
        door="shadow",
        client_request_id=ids["e"],
        input={"text": "under_score"},
        output={"label": "spam"},
    )
    ids["old"] = write_row("alpha", group, at["old"], member_id=1, version_id=11)
    return ids


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["request_id"] for r in response.json()["results"]]


def _names(ids: dict[str, str], found: list[str]) -> set[str]:
    by_id = {v: k for k, v in ids.items()}
    return {by_id.get(i, i) for i in found}


FILTER_CASES = [
    ({}, {"a", "b", "c", "d", "e"}),
    ({"member_id": "1"}, {"a", "c", "e"}),
    ({"version_id": "12"}, {"b"}),
    ({"role": "champion"}, {"a", "c", "e"}),
    ({"role": "shadow"}, {"d"}),
    ({"status": "error"}, {"c"}),
    ({"min_latency_ms": "50"}, {"b", "c"}),
    ({"has_feedback": "true"}, {"a"}),
    ({"has_feedback": "false"}, {"b", "c", "d", "e"}),
    ({"has_explanation": "yes"}, {"b"}),
    ({"routing_key": "bob"}, {"c"}),
    ({"text": "hello"}, {"a"}),
    ({"text": "HAM"}, {"b"}),
    ({"text": "%"}, {"b"}),  # LIKE wildcards are matched literally
    ({"text": "_"}, {"d", "e"}),
    ({"shadow": "true"}, {"d"}),
    ({"shadow": "false"}, {"a", "b", "c", "e"}),
    ({"client_request_id": "caller-1"}, {"e"}),
    ({"role": "champion", "min_latency_ms": "6"}, {"c", "e"}),
    ({"role": "champion", "status": "ok", "routing_key": "nobody"}, set()),
]


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_each_filter_selects_exactly_the_matching_rows(manage, known, query, expected):
    found = _ids(manage.get(API.format(slug="browse"), query))

    assert _names(known, found) == expected
    assert len(found) == len(set(found))


def test_time_range_defaults_to_seven_days_and_since_until_bound_it(manage, known, now):
    url = API.format(slug="browse")
    everything = manage.get(url, {"since": (now - timedelta(days=11)).isoformat()})
    window = manage.get(
        url,
        {
            "since": (now - timedelta(days=4)).isoformat(),
            "until": (now - timedelta(minutes=150)).isoformat(),
        },
    )
    # A bare date as `until` is the end of that day; `since` is 7 days before it.
    until_day = (now - timedelta(days=2, hours=12)).date().isoformat()
    only_until = manage.get(url, {"until": until_day})

    assert _names(known, _ids(everything)) == {"a", "b", "c", "d", "e", "old"}
    assert _names(known, _ids(window)) == {"c", "d", "e"}
    assert _names(known, _ids(only_until)) == {"d", "e"}
    applied = window.json()["filters"]
    assert set(applied) == {"since", "until"}


def test_request_id_filter_finds_the_row_and_its_shadow_copy_even_when_old(
    manage, group, known, now
):
    url = API.format(slug="browse")
    shadow_of_old = write_row(
        "alpha",
        group,
        now - timedelta(days=10) + timedelta(seconds=2),
        role="shadow",
        shadow=True,
        client_request_id=known["old"],
    )

    linked = manage.get(url, {"request_id": known["e"]})
    alone = manage.get(url, {"request_id": known["a"]})
    old = manage.get(url, {"request_id": known["old"]})

    assert _names(known, _ids(linked)) == {"e", "d"}
    assert _names(known, _ids(alone)) == {"a"}
    # No `since` given: the UUIDv7's own time starts the range, not "7 days ago".
    assert set(_ids(old)) == {known["old"], shadow_of_old}


def test_list_rows_carry_the_logged_columns(manage, known):
    body = manage.get(API.format(slug="browse"), {"request_id": known["b"]}).json()

    (row,) = body["results"]
    assert row["role"] == "challenger" and row["member_id"] == 2
    assert row["version_id"] == 12 and row["status"] == "ok"
    assert row["latency_ms"] == 50.0 and row["has_explanation"] is True
    assert row["door"] == "rest" and row["feedback"] is None
    assert "input" not in row and "explanation" not in row
    assert body["next"] is None and body["next_url"] is None


# --- keyset pagination -------------------------------------------------------------


def test_keyset_pagination_returns_every_row_once_in_order(manage, group, now):
    written = []
    for i in range(17):
        written.append(write_row("alpha", group, now - timedelta(minutes=i)))
    same_moment = now - timedelta(minutes=30)
    for _ in range(6):  # equal ts: the request id breaks the tie
        written.append(write_row("alpha", group, same_moment))
    with schema_context("alpha"):
        expected = [
            str(r["request_id"])
            for r in selectors.inference_list(
                group=group, filters={}, limit=selectors.MAX_LIMIT
            ).rows
        ]
    assert sorted(expected) == sorted(written)

    seen: list[str] = []
    query: dict[str, str] = {"limit": "5"}
    pages = 0
    while True:
        body = manage.get(API.format(slug="browse"), query).json()
        seen += [r["request_id"] for r in body["results"]]
        pages += 1
        if body["next"] is None:
            break
        assert body["next_url"].endswith(f"cursor={body['next']}")
        query = {"limit": "5", "cursor": body["next"]}

    assert seen == expected
    assert len(seen) == len(set(seen)) == 23 and pages == 5
    # Newest first: (ts, request_id) strictly descending.
    with schema_context("alpha"):
        keys = [(selectors.uuid7_moment(uuid.UUID(i)), i) for i in seen]
    assert keys == sorted(keys, reverse=True)


def test_next_url_keeps_the_filters_and_the_resolved_window(manage, group, now):
    for i in range(3):
        write_row("alpha", group, now - timedelta(minutes=i), role="challenger")
    write_row("alpha", group, now - timedelta(minutes=5))

    first = manage.get(API.format(slug="browse"), {"role": "challenger", "limit": 2})
    second = manage.get(first.json()["next_url"])

    assert len(first.json()["results"]) == 2
    assert "role=challenger" in first.json()["next_url"]
    assert "since=" in first.json()["next_url"]
    assert [r["role"] for r in second.json()["results"]] == ["challenger"]
    assert second.json()["next"] is None


# --- CSV export --------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_csv_export_matches_the_filter_and_neutralises_formula_cells(
    manage, group, known, now
):
    hostile = write_row(
        "alpha",
        group,
        now - timedelta(minutes=10),
        role="challenger",
        routing_key='=HYPERLINK("http://evil","x")',
        requester="@SUM(A1:A9)",
        status="error",
        error_code="-2+3",
        error_message="+cmd|' /C calc'!A0",
        input={"note": "=1+1"},
    )

    rows = _csv(
        manage.get(API.format(slug="browse") + "export.csv", {"role": "challenger"})
    )

    header, body = rows[0], rows[1:]
    assert header == list(selectors.COLUMNS)
    col = {name: i for i, name in enumerate(header)}
    assert [r[col["request_id"]] for r in body] == [hostile, known["b"]]
    evil = body[0]
    assert evil[col["routing_key"]] == '\'=HYPERLINK("http://evil","x")'
    assert evil[col["requester"]] == "'@SUM(A1:A9)"
    assert evil[col["error_code"]] == "'-2+3"
    assert evil[col["error_message"]] == "'+cmd|' /C calc'!A0"
    assert evil[col["input"]] == '{"note":"=1+1"}'  # JSON starts with a brace
    for row in body:
        assert not any(cell[:1] in ("=", "+", "-", "@") for cell in row)
    explained = body[1]
    assert explained[col["latency_ms"]] == "50.0"
    assert explained[col["shadow"]] == "false"
    assert '"base_value":0.5' in explained[col["explanation"]]


def test_csv_export_is_bounded_and_fetched_in_batches(manage, group, now, monkeypatch):
    written = [write_row("alpha", group, now - timedelta(seconds=i)) for i in range(7)]
    monkeypatch.setattr(selectors, "EXPORT_BATCH", 2)
    monkeypatch.setattr(selectors, "EXPORT_MAX_ROWS", 5)

    rows = _csv(manage.get(API.format(slug="browse") + "export.csv"))

    assert [r[0] for r in rows[1:]] == written[:5]


def test_csv_export_refuses_a_bad_filter_before_streaming(manage, known):
    response = manage.get(
        API.format(slug="browse") + "export.csv", {"min_latency_ms": "slow"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "min_latency_ms": ["expected a number of milliseconds >= 0"]
    }


# --- detail: explanation and audit events ------------------------------------------


def _audit_under(request_id: str, action: str) -> None:
    token = request_id_var.set(request_id)
    try:
        with schema_context("alpha"):
            audit_record(actor="someone", action=action, object_type="x", object_id="1")
    finally:
        request_id_var.reset(token)


def test_detail_api_returns_payloads_explanation_audit_events_and_related_rows(
    manage, known
):
    _audit_under(known["a"], "thing.changed")
    _audit_under(known["b"], "other.changed")

    body = manage.get(API.format(slug="browse") + f"{known['a']}/").json()

    assert body["request_id"] == known["a"]
    assert body["input"] == {"text": "hello world"}
    assert body["output"] == {"label": "spam"}
    assert body["feedback"] == {"label": 1} and body["feedback_at"]
    assert body["explanation"] is None and body["has_explanation"] is False
    assert [e["action"] for e in body["audit_events"]] == ["thing.changed"]
    assert body["related"] == []
    copied = manage.get(API.format(slug="browse") + f"{known['e']}/").json()
    shadow = manage.get(API.format(slug="browse") + f"{known['d']}/").json()
    assert [r["request_id"] for r in copied["related"]] == [known["d"]]
    assert [r["request_id"] for r in shadow["related"]] == [known["e"]]
    explained = manage.get(API.format(slug="browse") + f"{known['b']}/").json()
    assert explained["explanation"] == EXPLANATION


def test_detail_finds_audit_events_under_the_callers_own_request_id(manage, known):
    _audit_under("caller-1", "by.caller.id")

    body = manage.get(API.format(slug="browse") + f"{known['e']}/").json()

    assert [e["action"] for e in body["audit_events"]] == ["by.caller.id"]


@pytest.mark.parametrize(
    "request_id", ["nope", "00000000-0000-7000-8000-000000000000", "%00", "1" * 300]
)
def test_unknown_or_malformed_request_ids_are_404(manage, known, request_id):
    response = manage.get(API.format(slug="browse") + f"{request_id}/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def _rects(html: str) -> list[dict[str, float]]:
    rects = re.findall(r"<rect ([^>]*data-signed-width[^>]*)/>", html)
    out = []
    for attrs in rects:
        found = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        out.append(
            {k: float(found[k]) for k in ("width", "data-signed-width", "data-value")}
        )
    return out


def test_detail_page_draws_the_shap_chart_whose_bars_sum_to_output_minus_base(
    viewer_page, known
):
    response = viewer_page.get(f"/inference/browse/{known['b']}/")

    assert response.status_code == 200
    html = response.content.decode()
    svg = re.search(r'<svg [^>]*class="inference-waterfall"[^>]*>', html).group(0)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', svg))
    scale, base, output = (
        float(attrs["data-scale"]),
        float(attrs["data-base-value"]),
        float(attrs["data-output"]),
    )
    bars = _rects(html)
    assert len(bars) == 3
    assert math.fsum(b["data-signed-width"] for b in bars) / scale == pytest.approx(
        EXPLANATION["output"] - EXPLANATION["base_value"], abs=1e-5
    )
    assert (base, output) == (0.5, EXPLANATION["output"])
    assert [b["data-value"] for b in bars] == [1.5, -0.75, 0.125]
    # Two colours with a legend, and the numbers as a table beside the chart.
    assert 'fill="#d6336c"' in html and 'fill="#1c7ed6"' in html
    assert "raises the output" in html and "lowers the output" in html
    assert "inference-shap-table" in html and "+1.5" in html and "-0.75" in html
    assert "log-odds" in html
    assert "<script" not in html.split("<main>")[1]


def test_detail_page_shows_payloads_caller_timings_feedback_and_audit_events(
    viewer_page, known
):
    _audit_under(known["a"], "thing.changed")

    html = viewer_page.get(f"/inference/browse/{known['a']}/").content.decode()

    assert known["a"] in html
    assert "&quot;text&quot;: &quot;hello world&quot;" in html  # pretty input JSON
    assert "api-key:test" in html and "alice" in html  # requester, routing key
    assert "5.000 ms" in html and "8.000 ms" in html  # total and model latency
    assert "thing.changed" in html
    copied = viewer_page.get(f"/inference/browse/{known['e']}/").content.decode()
    assert f'href="/inference/browse/{known["d"]}/"' in copied  # its shadow copy
    assert "No explanation is stored for this inference" in html


def test_detail_page_of_a_malformed_explanation_says_so(viewer_page, group, now):
    rid = write_row(
        "alpha", group, now, explanation={"base_value": "?", "values": {"a": 1}}
    )

    response = viewer_page.get(f"/inference/browse/{rid}/")

    assert response.status_code == 200
    assert "cannot be drawn: base_value is not a number" in response.content.decode()


# --- pages ---------------------------------------------------------------------------


def test_browser_page_lists_the_filtered_rows_with_an_older_link_and_export(
    viewer_page, group, known, now
):
    for i in range(60):
        write_row("alpha", group, now - timedelta(minutes=5, seconds=i))

    first = viewer_page.get("/inference/browse/")
    html = first.content.decode()

    assert first.status_code == 200
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', html).group(1)
    export = re.search(r'<a class="button inference-export" href="([^"]+)"', html)
    assert (
        export
        and "/api/v1/groups/browse/inferences/export.csv?since=" in export.group(1)
    )
    second = viewer_page.get("/inference/browse/" + older.replace("&amp;", "&"))
    shown = re.findall(r"/inference/browse/([0-9a-f-]{36})/", html)
    shown2 = re.findall(r"/inference/browse/([0-9a-f-]{36})/", second.content.decode())
    assert len(shown) == 50 and not set(shown) & set(shown2)
    assert len(shown) + len(shown2) == 65  # 60 + a, b, c, d, e
    # Row c, the only error, is marked; the last page has no Older link.
    errors = html.count("inference-row-error") + second.content.decode().count(
        "inference-row-error"
    )
    assert errors == 1 and 'rel="next"' not in second.content.decode()

    filtered = viewer_page.get("/inference/browse/", {"role": "challenger"}).content
    links = re.findall(r"/inference/browse/([0-9a-f-]{36})/", filtered.decode())
    assert links == [known["b"]]
    export = re.search(r'inference-export" href="([^"]+)"', filtered.decode())
    assert "role=challenger" in export.group(1)


def test_request_id_search_leads_from_the_header_to_the_row(viewer_page, known):
    from_group = viewer_page.get("/inference/browse/", {"request_id": known["c"]})
    from_index = viewer_page.get("/inference/", {"request_id": known["c"]})
    by_caller_id = viewer_page.get("/inference/", {"request_id": "caller-1"})
    missing = viewer_page.get(
        "/inference/", {"request_id": str(uuid7_at(datetime.now(UTC)))}
    )

    assert from_group.status_code == 302
    assert from_group["Location"] == f"/inference/browse/{known['c']}/"
    assert from_index["Location"] == f"/inference/browse/{known['c']}/"
    assert by_caller_id["Location"] == f"/inference/browse/{known['e']}/"
    assert missing.status_code == 404
    assert "No group logged an inference" in missing.content.decode()


def test_a_real_prediction_is_found_by_its_response_header(
    tenant_a, trained, make_key, api_client, viewer_page
):
    """Header -> row -> detail, through the REST door of a real model."""
    from apps.tenants import demo

    with schema_context("alpha"):
        demo.seed_demo_content(actor="test")
    _, key = make_key(tenant_a, scope="manage")
    client = api_client(tenant_a, key=key)
    inputs = demo.demo_rows(1)[0]

    answer = client.post(
        f"/api/v1/groups/{demo.DEMO_GROUP}/predict/", {"inputs": inputs}, format="json"
    )
    rid = answer["X-Request-ID"]
    detail = client.get(API.format(slug=demo.DEMO_GROUP) + f"{rid}/")
    page = viewer_page.get("/inference/", {"request_id": rid})

    assert answer.status_code == 200 and answer.json()["request_id"] == rid
    assert detail.status_code == 200
    assert detail.json()["input"] == inputs
    assert detail.json()["output"] == answer.json()["outputs"]
    assert detail.json()["member_id"] == answer.json()["served"]["member_id"]
    assert page["Location"] == f"/inference/{demo.DEMO_GROUP}/{rid}/"


def test_index_lists_groups_or_goes_straight_to_the_only_one(
    tenant_a, viewer_page, group
):
    only = viewer_page.get("/inference/")
    with schema_context("alpha"):
        from apps.groups.services import group_create

        group_create(name="Never Active", slug="never-active", actor="test")
    listing = viewer_page.get("/inference/")
    never = viewer_page.get("/inference/never-active/")

    assert only.status_code == 302 and only["Location"] == "/inference/browse/"
    assert listing.status_code == 200
    assert "/inference/never-active/" in listing.content.decode()
    assert "never activated: nothing logged" in listing.content.decode()
    assert "has never been active, so nothing is logged yet" in never.content.decode()
    # The nav shows the browser once its URL resolves.
    assert '<a href="/inference/" aria-current="page">Inference</a>' in (
        listing.content.decode()
    )


def test_empty_time_range_says_so_honestly(viewer_page, group, known):
    response = viewer_page.get("/inference/browse/", {"routing_key": "nobody"})
    empty = viewer_page.get(
        "/inference/browse/", {"since": "2001-01-01", "until": "2001-01-02"}
    )

    assert "No inference in this time range matches these filters" in (
        response.content.decode()
    )
    assert "No inferences logged in this time range" in empty.content.decode()


def test_a_bad_filter_on_the_page_is_a_400_naming_it(viewer_page, group):
    response = viewer_page.get("/inference/browse/", {"member_id": "abc"})

    assert response.status_code == 400
    assert "member_id (expected a positive whole number)" in response.content.decode()


# --- tenants and roles -----------------------------------------------------------------


def test_another_tenants_group_and_rows_are_not_found(
    tenant_a, tenant_b, make_key, api_client, make_user, page_client, group, known
):
    logged_group("beta", "beta-only")
    beta_browse = logged_group("beta", "browse")  # the same slug in beta
    write_row("beta", beta_browse, timezone.now())
    _, alpha_key = make_key(tenant_a)
    _, beta_key = make_key(tenant_b)
    alpha = api_client(tenant_a, key=alpha_key)
    beta = api_client(tenant_b, key=beta_key)
    beta_page = page_client(tenant_b, make_user(tenant_b, "viewer"))

    assert alpha.get(API.format(slug="beta-only")).status_code == 404
    assert alpha.get(API.format(slug="beta-only") + "export.csv").status_code == 404
    assert beta.get(API.format(slug="browse") + f"{known['a']}/").status_code == 404
    assert _ids(beta.get(API.format(slug="browse"), {"request_id": known["a"]})) == []
    assert len(_ids(beta.get(API.format(slug="browse")))) == 1
    assert beta_page.get(f"/inference/browse/{known['a']}/").status_code == 404
    assert beta_page.get("/inference/", {"request_id": known["a"]}).status_code == 404


@pytest.mark.parametrize(
    "path", ["", "export.csv", "{a}/"], ids=["list", "export", "detail"]
)
def test_predict_keys_are_refused_and_viewers_may_read(
    tenant_a, make_key, make_user, api_client, known, path
):
    url = API.format(slug="browse") + path.format(a=known["a"])
    _, predict_key = make_key(tenant_a, scope="predict")
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))

    refused = api_client(tenant_a, key=predict_key).get(url)
    anonymous = api_client(tenant_a).get(url)

    assert refused.status_code == 403
    assert "scope 'predict'" in refused.json()["error"]["message"]
    assert anonymous.status_code in (401, 403)
    assert viewer.get(url).status_code == 200


def test_pages_need_a_signed_in_member(tenant_a, page_client, known):
    anonymous = page_client(tenant_a)

    response = anonymous.get(f"/inference/browse/{known['a']}/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- bad and junk input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("since", "yesterday"),
        ("since", "2025-02-30"),
        ("until", "2025-13-01T00:00"),
        ("until", "0001-01-01"),
        ("member_id", "abc"),
        ("member_id", "-1"),
        ("member_id", "9" * 40),
        ("version_id", "1.5"),
        ("role", "king"),
        ("status", "OK!"),
        ("min_latency_ms", "fast"),
        ("min_latency_ms", "-1"),
        ("min_latency_ms", "nan"),
        ("min_latency_ms", "inf"),
        ("has_feedback", "maybe"),
        ("has_explanation", "2"),
        ("shadow", "sometimes"),
        ("request_id", "not-a-uuid"),
        ("client_request_id", "has spaces"),
        ("routing_key", "k" * 201),
        ("text", "t" * 201),
        ("text", "nul\x00byte"),
        ("cursor", "garbage!"),
        ("cursor", "bm90IGEgY3Vyc29y"),
        ("limit", "0"),
        ("limit", "501"),
    ],
)
def test_bad_filters_are_400_naming_the_filter(manage, group, name, value):
    response = manage.get(API.format(slug="browse"), {name: value})

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_filter"
    assert list(error["fields"]) == [name]
    assert name in error["message"]


def test_until_before_since_is_refused(manage, group):
    response = manage.get(
        API.format(slug="browse"), {"since": "2025-02-02", "until": "2025-02-01"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"until": ["must be later than since"]}


def _junk(rng: random.Random) -> str:
    names = [*selectors.FILTER_NAMES, "cursor", "limit", "format", "x", "", "[]"]
    alphabet = string.printable + "é☃\x00%&=+;#" + "".join(chr(i) for i in range(1, 32))
    parts = []
    for _ in range(rng.randint(1, 6)):
        key = rng.choice(names)
        kind = rng.random()
        if kind < 0.3:
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        elif kind < 0.5:
            value = rng.choice(["-1", "1e309", "NaN", "0x10", "1_000", " 7 ", "\uff12"])
        elif kind < 0.7:
            value = rng.choice(
                ["2025-01-01T25:00", "9999-12-31", "0001-01-01T00:00+14:00", "now"]
            )
        elif kind < 0.85:
            value = "x" * rng.randint(150, 3000)
        else:
            value = str(uuid7_at(datetime.now(UTC))) + rng.choice(["", "x", "'"])
        parts.append(urlencode({key: value}))
    return "&".join(parts)


def test_junk_query_strings_never_cause_a_500(manage, viewer_page, known):
    rng = random.Random(20260601)
    for _ in range(30):
        query = _junk(rng)
        for response in (
            manage.get(f"{API.format(slug='browse')}?{query}"),
            manage.get(f"{API.format(slug='browse')}export.csv?{query}"),
            viewer_page.get(f"/inference/browse/?{query}"),
            viewer_page.get(f"/inference/?{query}"),
        ):
            assert response.status_code in (200, 302, 400, 404), (query, response)
            if response.status_code == 200 and response.get(
                "Content-Type", ""
            ).startswith("text/csv"):
                b"".join(response.streaming_content)
