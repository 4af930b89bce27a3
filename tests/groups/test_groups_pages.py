"""`/groups/` pages: the list with real traffic counts and filters, a group's page
(members, table status, traffic, test), the create flow, the weights editor with
the services' refusals, activation, "Try it", roles, and the admin's limits."""

# ruff: noqa: F811 (pytest fixtures imported from group_helpers are arguments)

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.core.context import new_request_id
from apps.groups.models import Membership, ModelGroup
from apps.groups.services import group_create, members_set
from apps.inference import tables
from apps.inference.models import InferenceTable
from apps.inference.writer import log_write
from apps.tenants.demo import DEMO_GROUP, demo_rows
from tests.groups.group_helpers import (  # noqa: F401 (fixtures)
    audit_of,
    demo_group,
    members_post,
    pages_wired,
    third_version,
    versions_of,
)

pytestmark = pytest.mark.usefixtures("pages_wired")

LIST = "/groups/"
NEW = "/groups/new/"
DETAIL = f"/groups/{DEMO_GROUP}/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def editor(tenant_a, make_user):  # type: ignore[no-untyped-def]
    return make_user(tenant_a, "editor", email="editor@alpha.test")


@pytest.fixture
def browser(tenant_a, editor, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant_a, editor)


@pytest.fixture
def viewer_browser(tenant_a, make_user, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant_a, make_user(tenant_a, "viewer"))


@pytest.fixture
def versions(demo_group) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return versions_of(demo_group)


def _draft(versions, weights=(50, 50), slug="draft-one"):  # type: ignore[no-untyped-def]
    with schema_context("alpha"):
        group = group_create(
            name=slug.replace("-", " ").title(),
            slug=slug,
            actor="t",
            strategy="ab_test",
        )
        members_set(
            group=group,
            actor="t",
            members=[
                {
                    "version_id": versions["champion"],
                    "role": "champion",
                    "weight": weights[0],
                },
                {
                    "version_id": versions["challenger"],
                    "role": "challenger",
                    "weight": weights[1],
                },
            ],
        )
        return group


def _row_of(html: str, row_id: str) -> str:
    start = html.index(f'id="{row_id}"')
    return html[start : html.index("</tr>", start)]


def _messages(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


def _group(slug: str) -> ModelGroup:
    with schema_context("alpha"):
        return ModelGroup.objects.get(slug=slug)


def _members(slug: str) -> list[tuple[int, str, int, bool]]:
    with schema_context("alpha"):
        return list(
            Membership.objects.filter(group__slug=slug)
            .order_by("id")
            .values_list("version_id", "role", "weight", "active")
        )


# --- list -----------------------------------------------------------------------


def test_list_shows_members_and_the_requests_logged_in_the_last_24_hours(
    browser, demo_group, versions
):
    now = timezone.now()
    with schema_context("alpha"):
        for ts, shadow in [
            (now - timedelta(minutes=5), False),
            (now - timedelta(hours=23), False),
            (now - timedelta(minutes=1), True),  # a shadow copy: not a request
            (now - timedelta(hours=25), False),  # too old
        ]:
            log_write(
                demo_group.pk,
                {
                    "request_id": new_request_id(),
                    "ts": ts,
                    "status": "ok",
                    "shadow": shadow,
                },
            )
    _draft(versions)

    response = browser.get(LIST)
    html = response.content.decode()

    assert response.status_code == 200
    assert '<a href="/groups/" aria-current="page">Groups</a>' in html
    demo = _row_of(html, f"group-{DEMO_GROUP}")
    assert f'<a href="/groups/{DEMO_GROUP}/">Breast cancer screening</a>' in demo
    assert '<span class="badge status-active">active</span>' in demo
    assert re.findall(r"</span> (breast-cancer-classifier v\d+ \d+%)</li>", demo) == [
        "breast-cancer-classifier v1 80%",
        "breast-cancer-classifier v2 20%",
    ]
    assert '<td class="num">2</td>' in demo
    draft = _row_of(html, "group-draft-one")
    assert '<span class="badge status-draft">draft</span>' in draft
    assert 'title="Not activated yet: no inference table">—</span>' in draft
    assert f'href="{NEW}"' in html


def test_list_filters_by_status_and_strategy(browser, demo_group, versions):
    _draft(versions)

    drafts = browser.get(LIST, {"status": "draft"}).content.decode()
    champion_challenger = browser.get(
        LIST, {"strategy": "champion_challenger"}
    ).content.decode()
    canary = browser.get(LIST, {"strategy": "canary"}).content.decode()

    assert 'id="group-draft-one"' in drafts and f'id="group-{DEMO_GROUP}"' not in drafts
    assert f'id="group-{DEMO_GROUP}"' in champion_challenger
    assert 'id="group-draft-one"' not in champion_challenger
    assert "No group matches these filters." in canary
    assert '<a href="/groups/">Show all 2</a>' in canary


def test_an_empty_list_says_so_and_offers_creation_to_editors_only(
    browser, viewer_browser
):
    editor_html = browser.get(LIST).content.decode()
    viewer_html = viewer_browser.get(LIST).content.decode()

    assert "No groups yet." in editor_html
    assert f'<a href="{NEW}">Create group</a>' in editor_html
    assert (
        "No groups yet. An editor of this organisation can create one." in viewer_html
    )
    assert NEW not in viewer_html


# --- detail ---------------------------------------------------------------------


def test_detail_shows_members_table_status_traffic_and_test(browser, demo_group):
    with schema_context("alpha"):
        status = tables.status(demo_group.pk)
        champion = demo_group.members.get(role="champion")

    response = browser.get(DETAIL)
    html = response.content.decode()

    assert response.status_code == 200
    row = _row_of(html, f"member-{champion.pk}")
    assert "breast-cancer-classifier" in row and "<td>v1</td>" in row
    assert "<td>Upload</td>" in row
    assert '<span class="badge role-champion">champion</span>' in row
    assert '<td class="num">80%</td>' in row
    assert '<span class="routed-total">100%</span>' in html
    assert f"<dt>Table</dt><dd><code>inference_log_g{demo_group.pk}</code></dd>" in html
    assert (
        f"<dt>Day partitions</dt><dd>{tables.PARTITIONS_AHEAD + 1} · "
        f"{status.first_day} to {status.last_day}</dd>"
    ) in html
    assert "<dt>Rows in the default partition</dt><dd>0</dd>" in html
    assert "<dt>Sticky routing</dt><dd>yes" in html
    assert "Gradient boosting is at least as accurate as the linear baseline." in html
    assert "<dt>Primary metric</dt><dd>accuracy</dd>" in html
    assert "Edit members and weights" in html
    assert 'name="status" value="paused"' in html
    assert 'name="status" value="active"' not in html
    assert f'hx-post="/groups/{DEMO_GROUP}/try/"' in html


def test_an_unknown_group_is_404(browser, demo_group):
    assert browser.get("/groups/no-such-group/").status_code == 404


def test_another_tenants_group_is_404_through_this_host(
    tenant_b, make_user, page_client, browser, demo_group
):
    with schema_context("beta"):
        group_create(name="Beta only", slug="beta-only", actor="t")
    beta = page_client(tenant_b, make_user(tenant_b, "editor"))

    assert browser.get("/groups/beta-only/").status_code == 404
    assert beta.get("/groups/beta-only/").status_code == 200
    assert beta.get(DETAIL).status_code == 404
    assert "beta-only" not in browser.get(LIST).content.decode()


# --- create ---------------------------------------------------------------------


def _create_form(versions, third=None, **overrides):  # type: ignore[no-untyped-def]
    rows = [
        {"version": versions["champion"], "role": "champion", "weight": 90},
        {"version": versions["challenger"], "role": "challenger", "weight": 10},
        {"version": third, "role": "shadow", "weight": 0},
        {"version": "", "role": "challenger", "weight": 0},
    ]
    return {
        "name": "Cancer canary",
        "slug": "",
        "strategy": "canary",
        "description": "Ramp the boosted trees up.",
        "hypothesis": "Boosting is as accurate.",
        "primary_metric": "accuracy",
        "sticky": "on",
        "fallback_to_champion": "on",
        "canary_schedule": "5, 25@60, 50@120, 100@240",
        **members_post(rows, initial=4),
        **overrides,
    }


def test_the_create_page_offers_versions_with_model_number_and_source(
    browser, versions
):
    html = browser.get(NEW).content.decode()

    assert (
        f'<option value="{versions["champion"]}">breast-cancer-classifier v1 · Upload</option>'
        in html
    )
    assert 'name="members-0-role"' in html and 'name="members-3-role"' in html
    assert 'name="canary_schedule"' in html


def test_the_create_flow_makes_the_group_and_its_members(
    browser, editor, versions, third_version
):
    response = browser.post(NEW, _create_form(versions, third_version))

    assert response.status_code == 302, response.content.decode()[:3000]
    assert response["Location"] == "/groups/cancer-canary/"
    group = _group("cancer-canary")
    assert (group.name, group.strategy, group.status) == (
        "Cancer canary",
        "canary",
        "draft",
    )
    assert group.traffic_config == {
        "sticky": True,
        "fallback_to_champion": True,
        "canary": {
            "schedule": [
                {"percent": 5, "after_minutes": 0},
                {"percent": 25, "after_minutes": 60},
                {"percent": 50, "after_minutes": 120},
                {"percent": 100, "after_minutes": 240},
            ]
        },
    }
    assert (group.hypothesis, group.primary_metric) == (
        "Boosting is as accurate.",
        "accuracy",
    )
    assert _members("cancer-canary") == [
        (versions["champion"], "champion", 90, True),
        (versions["challenger"], "challenger", 10, True),
        (third_version, "shadow", 0, True),
    ]
    assert audit_of(group.pk) == [
        ("group.create", "editor@alpha.test"),
        ("group.members", "editor@alpha.test"),
    ]
    page = browser.get(response["Location"]).content.decode()
    assert "is created as a draft" in page
    assert "<code>5,25@60,50@120,100@240</code>" in page


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            {"canary_schedule": "5,abc@60"},
            "Not a schedule: step 2 (&#x27;abc@60&#x27;): the percent must be a "
            "whole number.",
        ),
        (
            {"canary_schedule": "5,25@60,50@30"},
            "each step must start later than the one before",
        ),
        ({"canary_schedule": "5,150@60"}, "percent must be 0-100"),
        ({"canary_schedule": ""}, "A canary group needs a schedule."),
        ({"strategy": "ab_test"}, "Only a canary group follows a schedule."),
        ({"members-0-version": ""}, "Choose the champion&#x27;s version."),
        (
            {"members-1-role": "champion"},
            "A group has one active champion, not 2.",
        ),
        (
            {"members-2-role": "shadow", "members-2-weight": "5"},
            "A shadow takes no weight",
        ),
        (
            {"members-1-version": "<champion>"},
            "A version can be in a group once: breast-cancer-classifier v1 · Upload.",
        ),
        ({"name": "Breast cancer screening"}, "Another group has this name."),
        ({"slug": "breast-cancer"}, "A group with this name or slug exists."),
        ({"slug": "new"}, "&#x27;new&#x27; cannot be a group slug."),
    ],
)
def test_the_create_flow_shows_what_is_wrong_and_creates_nothing(
    browser, versions, third_version, overrides, error
):
    overrides = {
        k: str(versions["champion"]) if v == "<champion>" else v
        for k, v in overrides.items()
    }
    response = browser.post(NEW, _create_form(versions, third_version, **overrides))
    html = response.content.decode()

    assert response.status_code == 400
    assert error in html
    assert ">\nRamp the boosted trees up.</textarea>" in html  # what was typed stays
    with schema_context("alpha"):
        assert list(ModelGroup.objects.values_list("slug", flat=True)) == [DEMO_GROUP]


def test_viewers_may_not_open_or_post_the_create_page(viewer_browser, versions):
    assert viewer_browser.get(NEW).status_code == 403
    assert viewer_browser.post(NEW, _create_form(versions)).status_code == 403


# --- weights editor -------------------------------------------------------------


def _editor_rows(versions, champion=80, challenger=20, **extra):  # type: ignore[no-untyped-def]
    """The demo group's rows in page order (champion first) and the blank row to
    add a version."""
    return [
        {"version": versions["champion"], "role": "champion", "weight": champion},
        {"version": versions["challenger"], "role": "challenger", "weight": challenger},
        {
            "version": extra.get("add", ""),
            "role": extra.get("add_role", "challenger"),
            "weight": 0,
        },
    ]


def test_the_weights_editor_saves_roles_and_weights(
    browser, demo_group, versions, third_version
):
    routing_version = _group(DEMO_GROUP).routing_version
    rows = _editor_rows(
        versions, champion=30, challenger=70, add=third_version, add_role="shadow"
    )
    rows[0]["role"], rows[1]["role"] = "challenger", "champion"  # swap the roles

    response = browser.post(
        f"{DETAIL}members/",
        members_post(rows, initial=2, routing_version=routing_version),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert sorted(_members(DEMO_GROUP)) == sorted(
        [
            (versions["challenger"], "champion", 70, True),
            (versions["champion"], "challenger", 30, True),
            (third_version, "shadow", 0, True),
        ]
    )
    assert _group(DEMO_GROUP).routing_version == routing_version + 1
    assert audit_of(demo_group.pk)[-1] == ("group.members", "editor@alpha.test")
    assert "Members and weights are saved." in browser.get(DETAIL).content.decode()


def test_the_weights_editor_refuses_a_bad_total_and_keeps_what_was_typed(
    browser, demo_group, versions
):
    before = _members(DEMO_GROUP)

    response = browser.post(
        f"{DETAIL}members/",
        members_post(
            _editor_rows(versions, champion=70, challenger=20),
            initial=2,
            routing_version=_group(DEMO_GROUP).routing_version,
        ),
    )
    html = response.content.decode()

    assert response.status_code == 400
    assert "The weights of active members sum to 90, not 100." in html
    assert 'name="members-0-weight" value="70"' in html
    assert "total: <output data-total>90</output>%" in html
    assert _members(DEMO_GROUP) == before


def test_the_weights_editor_removes_a_member(browser, versions, third_version):
    group = _draft(versions, weights=(100, 0))
    with schema_context("alpha"):
        members_set(
            group=group,
            actor="t",
            members=[
                *[
                    {"version_id": v, "role": r, "weight": w}
                    for v, r, w, _ in _members(group.slug)
                ],
                {"version_id": third_version, "role": "shadow", "weight": 0},
            ],
        )
    rows = [
        {"version": versions["champion"], "role": "champion", "weight": 100},
        {
            "version": versions["challenger"],
            "role": "challenger",
            "weight": 0,
            "delete": True,
        },
        {"version": third_version, "role": "shadow", "weight": 0},
        {"version": "", "role": "challenger", "weight": 0},
    ]

    response = browser.post(
        f"/groups/{group.slug}/members/",
        members_post(
            rows, initial=3, routing_version=_group(group.slug).routing_version
        ),
    )

    assert response.status_code == 302
    assert sorted(_members(group.slug)) == sorted(
        [
            (versions["champion"], "champion", 100, True),
            (third_version, "shadow", 0, True),
        ]
    )


def test_the_weights_editor_refuses_rows_from_a_stale_page(
    browser, demo_group, versions
):
    before = _members(DEMO_GROUP)
    stale = _group(DEMO_GROUP).routing_version - 1

    response = browser.post(
        f"{DETAIL}members/",
        members_post(
            _editor_rows(versions, champion=50, challenger=50),
            initial=2,
            routing_version=stale,
        ),
        follow=True,
    )

    assert "The group changed since this page was opened" in _messages(response)[0]
    assert _members(DEMO_GROUP) == before


# --- status ---------------------------------------------------------------------


def test_activation_from_the_page_provisions_the_inference_table(browser, versions):
    group = _draft(versions)

    response = browser.post(
        f"/groups/{group.slug}/status/", {"status": "active"}, follow=True
    )
    html = response.content.decode()

    assert response.redirect_chain == [(f"/groups/{group.slug}/", 302)]
    assert _messages(response) == [
        f"'Draft One' is active. Its requests are logged in inference_log_g{group.pk}."
    ]
    with schema_context("alpha"):
        assert (
            InferenceTable.objects.get(group=group).name == f"inference_log_g{group.pk}"
        )
        assert tables.table_exists(group.pk)
    assert f"<dt>Table</dt><dd><code>inference_log_g{group.pk}</code></dd>" in html
    assert _group(group.slug).status == "active"
    assert audit_of(group.pk)[-1] == ("group.status", "editor@alpha.test")


def test_activation_with_bad_weights_is_refused_with_the_reason(browser, versions):
    group = _draft(versions, weights=(70, 20))

    response = browser.post(
        f"/groups/{group.slug}/status/", {"status": "active"}, follow=True
    )

    assert _messages(response) == [
        "The group was not changed: The weights of active members sum to 90, not 100."
    ]
    assert _group(group.slug).status == "draft"
    with schema_context("alpha"):
        assert not InferenceTable.objects.filter(group=group).exists()


def test_pause_and_archive(browser, demo_group):
    browser.post(f"{DETAIL}status/", {"status": "paused"})
    assert _group(DEMO_GROUP).status == "paused"
    html = browser.get(DETAIL).content.decode()
    assert 'name="status" value="active"' in html
    assert "The group is paused: activate it to send a request." in html
    browser.post(f"{DETAIL}status/", {"status": "archived"})
    assert _group(DEMO_GROUP).status == "archived"


# --- try it ---------------------------------------------------------------------


def test_try_it_answers_with_a_logged_prediction(browser, demo_group):
    response = browser.post(
        f"{DETAIL}try/",
        {"inputs": json.dumps(demo_rows(1)[0]), "routing_key": "patient-1"},
        **HTMX,
    )
    html = response.content.decode()

    assert response.status_code == 200
    assert html.startswith('<div id="try-result"')
    request_id = re.search(r"<code data-request-id>([0-9a-f-]+)</code>", html).group(1)  # type: ignore[union-attr]
    assert request_id == response["X-Request-ID"]
    outputs = re.search(r"<pre data-outputs>(.*?)</pre>", html, re.S).group(1)  # type: ignore[union-attr]
    answer = json.loads(outputs.replace("&quot;", '"'))
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT door, requester, routing_key, status, output "
            f"FROM inference_log_g{demo_group.pk} WHERE request_id = %s",
            [request_id],
        )
        door, requester, routing_key, status, output = cursor.fetchone()
    assert (door, requester, routing_key, status) == (
        "page",
        "editor@alpha.test",
        "patient-1",
        "ok",
    )
    assert (json.loads(output) if isinstance(output, str) else output) == answer
    assert answer["prediction"] in (0, 1)


def test_try_it_names_what_is_wrong_with_the_inputs(browser, demo_group):
    row = demo_rows(1)[0]
    del row["mean_radius"]

    bad_json = browser.post(f"{DETAIL}try/", {"inputs": "{nope"}, **HTMX)
    missing = browser.post(f"{DETAIL}try/", {"inputs": json.dumps(row)}, **HTMX)

    assert bad_json.status_code == 200
    assert "inputs: Not valid JSON" in bad_json.content.decode()
    html = missing.content.decode()
    assert "<strong>invalid_inputs</strong>" in html
    assert "<li><code>inputs.mean_radius</code>: missing</li>" in html


def test_try_it_without_htmx_renders_the_page_with_the_answer(browser, demo_group):
    response = browser.post(f"{DETAIL}try/", {"inputs": json.dumps(demo_rows(1)[0])})

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Breast cancer screening" in html and "data-request-id" in html


# --- roles ----------------------------------------------------------------------


def test_viewers_see_everything_but_no_edit_controls(viewer_browser, demo_group):
    detail = viewer_browser.get(DETAIL)
    html = detail.content.decode()

    assert detail.status_code == 200
    assert "breast-cancer-classifier" in html and "inference_log_g" in html
    for control in (
        "Edit members and weights",
        'name="status"',
        "Try it",
        "Edit settings",
        "/members/",
        "/try/",
    ):
        assert control not in html
    assert "Create group" not in viewer_browser.get(LIST).content.decode()


def test_viewers_get_403_on_every_write(viewer_browser, demo_group, versions):
    before = (_members(DEMO_GROUP), _group(DEMO_GROUP).routing_version)
    posts = [
        (f"{DETAIL}members/", members_post(_editor_rows(versions, 50, 50), initial=2)),
        (f"{DETAIL}status/", {"status": "paused"}),
        (f"{DETAIL}try/", {"inputs": json.dumps(demo_rows(1)[0])}),
        (f"{DETAIL}edit/", {"name": "x", "strategy": "ab_test"}),
        (NEW, {"name": "x"}),
    ]

    assert [viewer_browser.post(url, data).status_code for url, data in posts] == [
        403
    ] * 5
    assert viewer_browser.get(f"{DETAIL}edit/").status_code == 403
    assert (_members(DEMO_GROUP), _group(DEMO_GROUP).routing_version) == before
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM inference_log_g{demo_group.pk}")
        assert cursor.fetchone()[0] == 0


def test_signed_out_visitors_are_sent_to_sign_in(tenant_a, page_client):
    response = page_client(tenant_a).get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/groups/")


# --- settings -------------------------------------------------------------------


def test_editing_settings_keeps_the_slug_and_unmanaged_config(browser, demo_group):
    with schema_context("alpha"):
        ModelGroup.objects.filter(pk=demo_group.pk).update(
            traffic_config={"sticky": True, "shadow_sample_rate": 0.5}
        )
    form = browser.get(f"{DETAIL}edit/").content.decode()
    assert 'name="slug"' in form and "disabled" in form

    response = browser.post(
        f"{DETAIL}edit/",
        {
            "name": "Breast cancer screening",
            "slug": "hijacked",
            "strategy": "champion_challenger",
            "description": "Now with fallback.",
            "fallback_to_champion": "on",
            "primary_metric": "f1",
        },
    )

    assert response.status_code == 302
    group = _group(DEMO_GROUP)
    assert group.traffic_config == {
        "sticky": False,
        "fallback_to_champion": True,
        "shadow_sample_rate": 0.5,
    }
    assert (group.description, group.primary_metric, group.hypothesis) == (
        "Now with fallback.",
        "f1",
        "",
    )
    assert audit_of(demo_group.pk)[-1] == ("group.update", "editor@alpha.test")


# --- admin ----------------------------------------------------------------------


def test_the_admin_saves_groups_through_the_services_and_shows_members_read_only(
    tenant_a, make_user, page_client, demo_group
):
    admin = page_client(tenant_a, make_user(tenant_a, "admin", email="boss@alpha.test"))
    with schema_context("alpha"):
        member = demo_group.members.first()

    added = admin.post(
        "/admin/groups/modelgroup/add/",
        {
            "name": "From the admin",
            "slug": "from-admin",
            "description": "",
            "strategy": "ab_test",
            "traffic_config": '{"sticky": true}',
            "promotion_rules": "{}",
            "hypothesis": "",
            "primary_metric": "",
            "retention_days": "30",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
        },
    )
    refused = admin.post(
        "/admin/groups/modelgroup/add/",
        {
            "name": "Bad config",
            "slug": "bad-config",
            "strategy": "canary",
            "traffic_config": '{"canary": {"schedule": [{"percent": 300}]}}',
            "promotion_rules": "{}",
            "retention_days": "30",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
        },
    )
    member_page = admin.get(f"/admin/groups/membership/{member.pk}/change/")

    assert added.status_code == 302, added.content.decode()[:2000]
    group = _group("from-admin")
    assert group.traffic_config == {"sticky": True}
    assert audit_of(group.pk) == [("group.create", "boss@alpha.test")]
    assert (
        refused.status_code == 200
        and "Not a traffic config" in refused.content.decode()
    )
    with schema_context("alpha"):
        assert not ModelGroup.objects.filter(slug="bad-config").exists()
    assert member_page.status_code == 200
    assert f'href="/groups/{DEMO_GROUP}/"' in member_page.content.decode()
    assert (
        admin.post(f"/admin/groups/membership/{member.pk}/change/", {}).status_code
        == 403
    )
    assert admin.get(f"/admin/groups/modelgroup/{group.pk}/delete/").status_code == 403
    with schema_context("alpha"):
        assert (
            AuditEvent.objects.filter(
                action="group.create", object_id=str(group.pk)
            ).count()
            == 1
        )
