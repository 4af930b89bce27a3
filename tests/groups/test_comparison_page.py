"""The group's Comparison page: every number equals SQL over the group's inference
table for the same window; verdict on real demo traffic; promote with confirmation;
range selector; roles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime
from django_tenants.utils import schema_context

from apps.groups import stats
from apps.groups.display import member_display, metric_text
from apps.groups.models import Membership
from apps.tenants.demo import DEMO_GROUP, demo_labels, demo_rows
from tests.groups.analytics_helpers import (
    members_of,
    raw_hourly,
    raw_member_numbers,
    write_row,
)
from tests.groups.group_helpers import audit_of, demo_group  # noqa: F401

URLCONF = "tests.groups.analytics_helpers"


@pytest.fixture
def wired(settings: Any) -> None:
    settings.ROOT_URLCONF = URLCONF


def _cards(html: str) -> dict[int, dict[str, str]]:
    cards = {}
    for member, body in re.findall(
        r'<section class="cmp-card[^"]*" data-member="(\d+)">(.*?)</section>',
        html,
        re.S,
    ):
        cards[int(member)] = dict(re.findall(r'data-kpi="(\w+)">([^<]*)<', body))
    return cards


def _window(html: str) -> tuple[datetime, datetime]:
    block = re.search(r'class="small cmp-window">(.*?)</p>', html, re.S).group(1)
    since, until = re.findall(r'datetime="([^"]+)"', block)[:2]
    return parse_datetime(since), parse_datetime(until)


def _raw_pairs(group_id, since, until):
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT member_id, feedback->>'label', output->>'prediction' "
            f"FROM inference_log_g{int(group_id)} WHERE ts >= %s AND ts < %s "
            f"AND status = 'ok' AND feedback ? 'label' ORDER BY ts",
            [since, until],
        )
        out: dict[int, tuple[list[str], list[str]]] = {}
        for member_id, label, prediction in cursor.fetchall():
            pair = out.setdefault(member_id, ([], []))
            pair[0].append(label)
            pair[1].append(prediction)
    return out


def _traffic(group) -> None:
    """Three hours of rows for both members: latencies, errors, right and wrong
    labels, unlabelled rows."""
    m = members_of(group)
    now = datetime.now(UTC)
    for hours_ago in (1, 2, 5):
        base = now - timedelta(hours=hours_ago)
        for i in range(12):
            for role, member in m.items():
                fast = role == "challenger"
                if fast and i >= 4 + hours_ago:
                    continue  # fewer requests for the challenger, varying by hour
                write_row(
                    group.pk,
                    at=base + timedelta(seconds=i),
                    member_id=member.pk,
                    version_id=member.version_id,
                    role=role,
                    latency_ms=(3.0 if fast else 9.0) * (1 + i) + hours_ago,
                    status="error" if i == 11 and not fast else "ok",
                    prediction=1,
                    label=(1 if i % 3 else 0) if i < 9 else None,
                )
    # Outside the 24 h window: must not count.
    old = m["champion"]
    write_row(
        group.pk,
        at=now - timedelta(days=3),
        member_id=old.pk,
        version_id=old.version_id,
        role="champion",
        latency_ms=1.0,
    )


def test_every_number_on_the_page_equals_sql_over_the_groups_table(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    _traffic(demo_group)
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    response = client.get(f"/groups/{demo_group.slug}/comparison/?range=24h")

    assert response.status_code == 200
    html = response.content.decode()
    since, until = _window(html)
    assert until - since in (timedelta(hours=24), timedelta(hours=25))
    raw = raw_member_numbers(demo_group.pk, since, until)
    cards = _cards(html)
    assert set(raw) <= set(cards)
    assert sum(r["requests"] for r in raw.values()) == 36 + 5 + 6 + 9
    for member_id, sql in raw.items():
        card = cards[member_id]
        assert int(card["requests"]) == sql["requests"]
        assert int(card["errors"]) == sql["errors"]
        assert int(card["labelled"]) == sql["labelled"]
        assert int(card["correct"]) == sql["correct"]
        expected = member_display(
            {
                "error_rate": stats.wilson_interval(
                    sql["errors"], sql["requests"]
                ).as_dict(),
                "primary": stats.wilson_interval(
                    sql["correct"], sql["labelled"]
                ).as_dict(),
                "p50_ms": None,
                "p95_ms": None,
                "p99_ms": None,
                "mean_latency_ms": sql["mean"],
            },
            "accuracy",
        )
        assert card["error_rate"] == expected["error_rate"]
        assert card["primary"] == expected["primary"]
        assert card["mean_ms"] == expected["mean"]
        # Percentiles come from the rollups' histogram: within one bucket of SQL's.
        for key, exact in (("p95_ms", sql["p95"]), ("p50_ms", sql["p50"])):
            shown = float(card[key].split()[0])
            assert exact / stats.LATENCY_RATIO - 0.05 <= shown
            assert shown <= exact * stats.LATENCY_RATIO + 0.05
    assert f"<span data-total-requests>{36 + 5 + 6 + 9}</span>" in html

    # Outcome metrics (in <details>) from the raw labelled rows, as SQL gives them.
    for member_id, (y_true, y_pred) in _raw_pairs(demo_group.pk, since, until).items():
        card = cards[member_id]
        for name, estimate in (
            ("precision", stats.precision(y_true, y_pred)),
            ("recall", stats.recall(y_true, y_pred)),
            ("f1", stats.f1(y_true, y_pred)),
        ):
            assert card[f"sec_{name}"] == metric_text(estimate.as_dict(), name)
        assert card["sec_precision"].startswith(
            f"{sum(t == '1' for t in y_true) / len(y_true) * 100:.2f} %"
        )  # every prediction is 1: precision is the share of 1 labels

    # The chart's table: requests per member and hour, as SQL counts them.
    table = re.search(r'<details class="cmp-table">(.*?)</details>', html, re.S)
    rows = re.findall(
        r'<tr><td><time datetime="([^"]+)">.*?</time></td>(.*?)</tr>',
        table.group(1),
        re.S,
    )
    charted = list(cards)  # the table's columns follow the cards' order
    shown = {}
    for hour, cells in rows:
        numbers = re.findall(r'<td class="num">([^<]*)</td>', cells)
        for index, member_id in enumerate(charted[: len(numbers) // 2]):
            if numbers[2 * index] != "0":
                shown[(parse_datetime(hour), member_id)] = int(numbers[2 * index])
    expected_hourly = {(h, m): n for h, m, n in raw_hourly(demo_group.pk, since, until)}
    assert len(expected_hourly) >= 6
    assert shown == expected_hourly


def test_demo_traffic_shows_the_labelled_requests_still_needed(
    demo_group,  # noqa: F811
    tenant_a,
    make_key,
    make_user,
    api_client,
    page_client,
    wired,
):
    _, key = make_key(tenant_a, scope="predict")
    machine = api_client(tenant_a, key=key)
    rows, labels = demo_rows(20), demo_labels(20)
    feedback = []
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        answer = machine.post(
            f"/api/v1/groups/{DEMO_GROUP}/predict/",
            {"inputs": row, "routing_key": f"patient-{i}"},
            format="json",
        )
        assert answer.status_code == 200
        feedback.append({"request_id": answer.json()["request_id"], "label": label})
    assert (
        machine.post(
            f"/api/v1/groups/{DEMO_GROUP}/feedback/",
            {"items": feedback},
            format="json",
        ).status_code
        == 200
    )
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = client.get(f"/groups/{DEMO_GROUP}/comparison/").content.decode()

    verdict = re.search(r'data-verdict="(\w+)"[^>]*>(.*?)</p>', html, re.S)
    assert verdict.group(1) == "needs_more_data"
    assert re.search(r"Needs \d+ more labelled requests", verdict.group(2))
    cards = _cards(html)
    assert sum(int(c["requests"]) for c in cards.values()) == 20
    assert sum(int(c["labelled"]) for c in cards.values()) == 20
    assert "Promote" not in html  # viewers do not see the button


def test_promote_from_the_page_asks_first_then_swaps_roles_and_audits(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    m = members_of(demo_group)
    editor = make_user(tenant_a, "editor")
    client = page_client(tenant_a, editor)
    page = client.get(f"/groups/{demo_group.slug}/comparison/").content.decode()
    assert "Promote…" in page

    confirm = client.get(
        f"/groups/{demo_group.slug}/comparison/promote/",
        {"member_id": m["challenger"].pk},
    )
    assert confirm.status_code == 200
    assert "Yes, promote" in confirm.content.decode()
    with schema_context("alpha"):  # asking changes nothing
        assert Membership.objects.get(pk=m["champion"].pk).role == "champion"

    done = client.post(
        f"/groups/{demo_group.slug}/comparison/promote/",
        {"member_id": m["challenger"].pk, "reason": "from the page"},
    )
    assert done.status_code == 302
    with schema_context("alpha"):
        assert Membership.objects.get(pk=m["challenger"].pk).role == "champion"
        assert Membership.objects.get(pk=m["champion"].pk).role == "challenger"
    action, actor = audit_of(demo_group.pk)[-1]
    assert action == "group.promote" and actor == editor.get_username()
    after = client.get(f"/groups/{demo_group.slug}/comparison/").content.decode()
    assert "from the page" in after  # the history


def test_viewers_cannot_promote(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    m = members_of(demo_group)
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))
    response = client.post(
        f"/groups/{demo_group.slug}/comparison/promote/",
        {"member_id": m["challenger"].pk},
    )
    assert response.status_code == 403
    with schema_context("alpha"):
        assert Membership.objects.get(pk=m["champion"].pk).role == "champion"


def test_range_selector_and_htmx_partial(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))
    one = client.get(f"/groups/{demo_group.slug}/comparison/?range=1h")
    since, until = _window(one.content.decode())
    assert until - since in (timedelta(hours=1), timedelta(hours=2))
    assert 'href="?range=1h" hx-get="?range=1h"' in one.content.decode()
    assert 'aria-current="page">1h<' in one.content.decode()
    month = client.get(f"/groups/{demo_group.slug}/comparison/?range=30d")
    s30, u30 = _window(month.content.decode())
    assert u30 - s30 in (timedelta(days=30), timedelta(days=30, hours=1))
    bogus = client.get(f"/groups/{demo_group.slug}/comparison/?range=forever")
    assert 'aria-current="page">24h<' in bogus.content.decode()
    partial = client.get(
        f"/groups/{demo_group.slug}/comparison/?range=7d", HTTP_HX_REQUEST="true"
    )
    assert "<html" not in partial.content.decode()
    assert "cmp-cards" in partial.content.decode()
    assert "No requests in this window" in partial.content.decode()


def test_group_page_links_to_the_comparison(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
    wired,
):
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))
    html = client.get(f"/groups/{demo_group.slug}/").content.decode()
    assert f'href="/groups/{demo_group.slug}/comparison/"' in html


def test_another_tenants_group_is_not_found(
    demo_group,  # noqa: F811
    tenant_b,
    make_user,
    page_client,
    wired,
):
    client = page_client(tenant_b, make_user(tenant_b, "viewer"))
    assert client.get(f"/groups/{demo_group.slug}/comparison/").status_code == 404


def test_comparison_api_numbers_match_the_page(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    api_client,
    page_client,
    wired,
):
    _traffic(demo_group)
    user = make_user(tenant_a, "viewer")
    html = (
        page_client(tenant_a, user)
        .get(f"/groups/{demo_group.slug}/comparison/")
        .content.decode()
    )
    since, until = _window(html)
    body = (
        api_client(tenant_a, user=user)
        .get(
            f"/api/v1/groups/{demo_group.slug}/comparison/",
            {"since": since.isoformat(), "until": until.isoformat()},
        )
        .json()
    )
    cards = _cards(html)
    assert body["primary_metric"] == "accuracy"
    for member in body["members"]:
        assert int(cards[member["member_id"]]["requests"]) == member["requests"]
        assert int(cards[member["member_id"]]["labelled"]) == member["labelled"]
    bad = api_client(tenant_a, user=user).get(
        f"/api/v1/groups/{demo_group.slug}/comparison/",
        {"since": until.isoformat(), "until": since.isoformat()},
    )
    assert bad.status_code == 400
    assert "since" in bad.json()["error"]["fields"]


def _set_metric(group, metric: str) -> Any:
    from apps.groups.services import group_update

    with schema_context("alpha"):
        return group_update(group=group, actor="t", primary_metric=metric)


def test_regression_groups_compare_on_mae_from_the_rollups(demo_group):  # noqa: F811
    from apps.groups.comparison import group_comparison
    from apps.groups.rollups import rollups_refresh

    group = _set_metric(demo_group, "mae")
    m = members_of(group)
    now = datetime.now(UTC) - timedelta(minutes=20)
    for i in range(30):
        for role, offset in (("champion", 1.0), ("challenger", 0.5)):
            member = m[role]
            write_row(
                group.pk,
                at=now + timedelta(seconds=i),
                member_id=member.pk,
                version_id=member.version_id,
                role=role,
                latency_ms=4.0,
                prediction=10.0 + offset * (1 + i % 3),
                value=10.0,
            )
    with schema_context("alpha"):
        rollups_refresh(group=group)
        result = group_comparison(
            group=group, since=now - timedelta(hours=1), until=now + timedelta(hours=1)
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT member_id, avg(abs((output->>'prediction')::float8 - "
                f"(feedback->>'value')::float8)) FROM inference_log_g{group.pk} "
                f"GROUP BY member_id"
            )
            expected = dict(cursor.fetchall())
    kpis = {k["member_id"]: k for k in result["members"]}
    for member_id, mae in expected.items():
        assert kpis[member_id]["primary"]["value"] == pytest.approx(mae)
        assert kpis[member_id]["primary"]["n"] == 30
    [verdict] = result["verdicts"]
    assert verdict["test"]["method"] == "welch_t"
    assert verdict["test"]["difference"] == pytest.approx(1.0 - 2.0)
    assert result["lower_is_better"] is True


def test_f1_primary_metric_reads_labelled_pairs_and_bootstraps(
    demo_group,  # noqa: F811
):
    from apps.groups.comparison import group_comparison
    from apps.groups.rollups import rollups_refresh

    group = _set_metric(demo_group, "f1")
    m = members_of(group)
    now = datetime.now(UTC) - timedelta(minutes=20)
    for i in range(40):
        for role in ("champion", "challenger"):
            member = m[role]
            write_row(
                group.pk,
                at=now + timedelta(seconds=i),
                member_id=member.pk,
                version_id=member.version_id,
                role=role,
                latency_ms=4.0,
                prediction=1 if (role == "challenger" or i % 2) else 0,
                label=1 if i % 4 else 0,
            )
    with schema_context("alpha"):
        rollups_refresh(group=group)
        result = group_comparison(
            group=group, since=now - timedelta(hours=1), until=now + timedelta(hours=1)
        )
    pairs = _raw_pairs(group.pk, now - timedelta(hours=1), now + timedelta(hours=1))
    kpis = {k["member_id"]: k for k in result["members"]}
    for member_id, (y_true, y_pred) in pairs.items():
        assert kpis[member_id]["primary"] == stats.f1(y_true, y_pred).as_dict()
    [verdict] = result["verdicts"]
    assert verdict["test"]["method"] == "bootstrap"
    assert verdict["verdict"] == "needs_more_data"


def test_comparison_api_gives_secondary_metrics_equal_to_sql_on_request(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    api_client,
):
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    _traffic(demo_group)
    client = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    url = f"/api/v1/groups/{demo_group.slug}/comparison/"
    plain = client.get(url).json()
    assert all("secondary" not in m for m in plain["members"])
    body = client.get(url, {"secondary": "true"}).json()
    since, until = parse_datetime(body["since"]), parse_datetime(body["until"])
    raw = _raw_pairs(demo_group.pk, since, until)
    assert len(raw) == 2  # both members have labelled rows: the loop below runs
    assert set(raw) == {m["member_id"] for m in body["members"] if m["labelled"]}
    for member in body["members"]:
        if member["member_id"] not in raw:
            continue
        labels, predictions = raw[member["member_id"]]
        truth = [int(v) for v in labels]
        guess = [int(v) for v in predictions]
        secondary = member["secondary"]
        for name, expected in (
            ("accuracy", accuracy_score(truth, guess)),
            ("precision", precision_score(truth, guess, zero_division=0)),
            ("recall", recall_score(truth, guess, zero_division=0)),
            ("f1", f1_score(truth, guess, zero_division=0)),
        ):
            assert secondary[name]["value"] == pytest.approx(expected), name
            assert secondary[name]["n"] > 0
    bad = client.get(url, {"secondary": "perhaps"})
    assert bad.status_code == 400 and "secondary" in bad.json()["error"]["fields"]
