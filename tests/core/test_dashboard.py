"""The dashboard home: each group's state at a glance (numbers equal SQL over the
group's inference table for the last 24 h), the verdict or what it still needs, and
the empty state that says what to do next."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.db import connection
from django_tenants.utils import schema_context

from tests.groups.analytics_helpers import members_of, write_row
from tests.groups.group_helpers import demo_group  # noqa: F401


def _card(html: str, slug: str) -> dict[str, str]:
    body = re.search(
        rf'<article class="dash-group[^"]*" data-group="{slug}">(.*?)</article>',
        html,
        re.S,
    ).group(1)
    return dict(re.findall(r'data-glance="(\w+)">([^<]*)<', body))


def _sql_24h(group_id: int) -> tuple[int, int]:
    now = datetime.now(UTC)
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE status <> 'ok') "
            f"FROM inference_log_g{int(group_id)} WHERE ts >= %s",
            [since],
        )
        return cursor.fetchone()


def test_groups_at_a_glance_equal_sql_for_the_last_24_hours(
    demo_group,  # noqa: F811
    tenant_a,
    make_user,
    page_client,
):
    m = members_of(demo_group)
    now = datetime.now(UTC)
    for i in range(12):
        for role, member in m.items():
            write_row(
                demo_group.pk,
                at=now - timedelta(minutes=30, seconds=i),
                member_id=member.pk,
                version_id=member.version_id,
                role=role,
                latency_ms=5.0 + i,
                status="error" if i == 0 and role == "champion" else "ok",
                label=1 if i % 2 else 0,
            )
    write_row(  # two days old: not in the glance
        demo_group.pk,
        at=now - timedelta(days=2),
        member_id=m["champion"].pk,
        version_id=m["champion"].version_id,
        role="champion",
        latency_ms=1.0,
    )
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = client.get("/").content.decode()

    card = _card(html, demo_group.slug)
    requests, errors = _sql_24h(demo_group.pk)
    assert (requests, errors) == (24, 1)
    assert int(card["requests"]) == requests
    assert card["error_rate"] == f"{errors / requests * 100:.2f} %"
    assert card["status"] == "active"
    assert card["champion"].endswith("v1")
    assert card["challengers"].endswith("v2")
    assert card["p95"].endswith(" ms")
    verdict = re.search(r'data-verdict="(\w+)">(.*?)</p>', html, re.S)
    assert verdict.group(1) == "needs_more_data"
    assert re.search(r"Needs \d+ more", verdict.group(2))
    assert f'href="/groups/{demo_group.slug}/comparison/"' in html
    assert "active user" in html  # the existing cards stay


def test_no_groups_says_what_to_do_next(tenant_a, make_user, page_client):
    editor = page_client(tenant_a, make_user(tenant_a, "editor"))
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = editor.get("/").content.decode()
    seen = viewer.get("/").content.decode()

    assert "No model groups yet." in html
    assert 'href="/groups/new/"' in html
    assert "An editor can create a group" in seen
    assert "dash-group" not in seen.replace("dash-groups", "")


def test_a_group_without_traffic_shows_no_numbers(
    tenant_a, make_user, page_client
) -> None:
    from apps.groups.models import ModelGroup

    with schema_context("alpha"):
        ModelGroup.objects.create(name="Quiet", slug="quiet")
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    html = client.get("/").content.decode()

    card = _card(html, "quiet")
    assert card["requests"] == "0"
    assert card["error_rate"] == "\u2013"
    assert card["p95"] == "\u2013"
    assert card["champion"] == "none"
    assert "No verdict: the group has no active champion." in html
    assert "Activate the group to serve it." in html


def test_past_the_limit_live_groups_come_before_archived_ones(
    tenant_a, make_user, page_client, monkeypatch
) -> None:
    from apps.core import views
    from apps.groups.models import ModelGroup

    monkeypatch.setattr(views, "GLANCE_LIMIT", 2)
    with schema_context("alpha"):
        ModelGroup.objects.create(name="A old", slug="a-old", status="archived")
        ModelGroup.objects.create(name="B old", slug="b-old", status="archived")
        ModelGroup.objects.create(name="Z draft", slug="z-draft", status="draft")
        ModelGroup.objects.create(name="Y paused", slug="y-paused", status="paused")
    html = (
        page_client(tenant_a, make_user(tenant_a, "viewer")).get("/").content.decode()
    )
    shown = re.findall(r'data-group="([\w-]+)"', html)
    assert shown == ["y-paused", "z-draft"]
