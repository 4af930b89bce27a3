"""`/api/v1/groups/`: create with members, read by slug, update, members and status
with the services' refusals named, roles and key scopes, tenant isolation, audit."""

# ruff: noqa: F811 (pytest fixtures imported from group_helpers are arguments)

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import schema_context

from apps.groups.models import Membership, ModelGroup
from apps.groups.services import group_create
from apps.inference.models import InferenceTable
from apps.tenants.demo import DEMO_GROUP, demo_rows
from tests.groups.group_helpers import (  # noqa: F401 (fixtures)
    audit_of,
    demo_group,
    third_version,
    versions_of,
)

URL = "/api/v1/groups/"


@pytest.fixture
def editor(tenant_a, make_user):  # type: ignore[no-untyped-def]
    return make_user(tenant_a, "editor", email="editor@alpha.test")


@pytest.fixture
def api(tenant_a, editor, api_client):  # type: ignore[no-untyped-def]
    return api_client(tenant_a, user=editor)


@pytest.fixture
def versions(demo_group) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return versions_of(demo_group)


def _create(api, versions, **overrides: Any):  # type: ignore[no-untyped-def]
    body = {
        "name": "Fraud screen",
        "description": "Two fraud models side by side.",
        "strategy": "ab_test",
        "traffic_config": {"sticky": True, "fallback_to_champion": False},
        "hypothesis": "v2 catches more fraud.",
        "primary_metric": "f1",
        "initial_members": [
            {"version_id": versions["champion"], "role": "champion", "weight": 70},
            {"version_id": versions["challenger"], "role": "challenger", "weight": 30},
        ],
        **overrides,
    }
    return api.post(URL, body, format="json")


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


def test_create_with_initial_members_answers_the_exact_group(api, versions):
    response = _create(api, versions)

    assert response.status_code == 201, response.content
    body = response.json()
    group = _group("fraud-screen")
    with schema_context("alpha"):
        members = list(group.members.order_by("id"))
    # Members come in the model's order: by role name, then id.
    assert body == {
        "id": group.pk,
        "name": "Fraud screen",
        "slug": "fraud-screen",
        "description": "Two fraud models side by side.",
        "strategy": "ab_test",
        "status": "draft",
        "traffic_config": {"sticky": True, "fallback_to_champion": False},
        "promotion_rules": {},
        "hypothesis": "v2 catches more fraud.",
        "primary_metric": "f1",
        "test_start": None,
        "test_end": None,
        "retention_days": 30,
        "routing_version": 2,  # created, then its members set
        "members": [
            {
                "id": members[1].pk,
                "version_id": versions["challenger"],
                "model": "breast-cancer-classifier",
                "version_number": 2,
                "role": "challenger",
                "weight": 30,
                "active": True,
                "assigned_at": body["members"][0]["assigned_at"],
            },
            {
                "id": members[0].pk,
                "version_id": versions["champion"],
                "model": "breast-cancer-classifier",
                "version_number": 1,
                "role": "champion",
                "weight": 70,
                "active": True,
                "assigned_at": body["members"][1]["assigned_at"],
            },
        ],
        "inference_table": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert body["created_at"].startswith(group.created_at.isoformat()[:19])


def test_create_answers_the_routing_version_that_is_stored(api, versions):
    body = _create(api, versions).json()

    assert body["routing_version"] == _group("fraud-screen").routing_version == 2


def test_retrieve_by_slug_and_list_with_filters(api, versions):
    created = _create(api, versions).json()

    one = api.get(f"{URL}fraud-screen/")
    drafts = api.get(URL, {"status": "draft"})
    active = api.get(URL, {"status": "active"})

    assert one.status_code == 200
    assert one.json() == {**created, "routing_version": 2}
    assert [g["slug"] for g in drafts.json()["results"]] == ["fraud-screen"]
    assert [g["slug"] for g in active.json()["results"]] == [DEMO_GROUP]
    assert api.get(f"{URL}no-such-group/").status_code == 404


def test_patch_changes_description_and_traffic_config_and_bumps_routing(api, versions):
    _create(api, versions, strategy="canary")

    response = api.patch(
        f"{URL}fraud-screen/",
        {
            "description": "Ramp v2 up slowly.",
            "traffic_config": {
                "sticky": False,
                "fallback_to_champion": True,
                "canary": {
                    "schedule": [
                        {"percent": 5},
                        {"percent": 50, "after_minutes": 60},
                        {"percent": 100, "after_minutes": 240},
                    ]
                },
            },
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["description"] == "Ramp v2 up slowly."
    # A partial update applies no nested defaults: the first step keeps no minutes
    # (routing reads a missing after_minutes as 0).
    assert body["traffic_config"] == {
        "sticky": False,
        "fallback_to_champion": True,
        "canary": {
            "schedule": [
                {"percent": 5},
                {"percent": 50, "after_minutes": 60.0},
                {"percent": 100, "after_minutes": 240.0},
            ]
        },
    }
    assert body["routing_version"] == 3
    group = _group("fraud-screen")
    assert group.description == "Ramp v2 up slowly."
    assert group.traffic_config["canary"]["schedule"][2] == {
        "percent": 100,
        "after_minutes": 240.0,
    }


def test_patch_with_a_bad_schedule_names_the_field(api, versions):
    _create(api, versions)

    response = api.patch(
        f"{URL}fraud-screen/",
        {"traffic_config": {"canary": {"schedule": [{"percent": 140}]}}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "traffic_config.canary.schedule.0.percent": [
            "Ensure this value is less than or equal to 100."
        ]
    }
    assert _group("fraud-screen").traffic_config == {
        "sticky": True,
        "fallback_to_champion": False,
    }


def test_put_members_with_bad_weights_on_an_active_group_is_refused_by_name(
    api, demo_group, versions
):
    before = _members(DEMO_GROUP)

    response = api.put(
        f"{URL}{DEMO_GROUP}/members/",
        {
            "members": [
                {"version_id": versions["champion"], "role": "champion", "weight": 70},
                {
                    "version_id": versions["challenger"],
                    "role": "challenger",
                    "weight": 20,
                },
            ]
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "The weights of active members sum to 90, not 100.",
        "fields": {"members": ["the weights of active members sum to 90, not 100"]},
    }
    assert _members(DEMO_GROUP) == before


def test_put_members_replaces_the_list_with_a_shadow(
    api, demo_group, versions, third_version
):
    response = api.put(
        f"{URL}{DEMO_GROUP}/members/",
        {
            "members": [
                {"version_id": versions["champion"], "role": "champion", "weight": 50},
                {
                    "version_id": versions["challenger"],
                    "role": "challenger",
                    "weight": 50,
                },
                {"version_id": third_version, "role": "shadow", "weight": 0},
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert [
        (m["version_number"], m["role"], m["weight"])
        for m in response.json()["members"]
    ] == [(2, "challenger", 50), (1, "champion", 50), (3, "shadow", 0)]
    assert _members(DEMO_GROUP) == [
        (versions["champion"], "champion", 50, True),
        (versions["challenger"], "challenger", 50, True),
        (third_version, "shadow", 0, True),
    ]


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (
            [("champion", 50), ("champion", 50)],
            "A group has one active champion, not 2.",
        ),
        ([("champion", 100), ("shadow", 10)], "Shadow members take no weight."),
        (
            [("champion", 100), ("champion", 0)],
            "A version can be in a group only once.",
        ),
    ],
)
def test_members_a_draft_group_can_never_hold_are_refused_not_crashed(
    api, versions, members, message
):
    _create(api, versions, initial_members=[])
    ids = [versions["champion"], versions["challenger"]]
    if message.startswith("A version"):
        ids = [versions["champion"], versions["champion"]]

    response = api.put(
        f"{URL}fraud-screen/members/",
        {
            "members": [
                {"version_id": v, "role": role, "weight": weight}
                for v, (role, weight) in zip(ids, members, strict=True)
            ]
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert list(response.json()["error"]["fields"]) == ["members"]
    assert _members("fraud-screen") == []


def test_status_active_provisions_the_table_and_answers_its_name(api, versions):
    group_id = _create(api, versions).json()["id"]

    response = api.post(f"{URL}fraud-screen/status/", {"status": "active"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "active"
    assert body["inference_table"] == f"inference_log_g{group_id}"
    assert body["test_start"] is not None
    with schema_context("alpha"):
        assert InferenceTable.objects.get(group_id=group_id).name == (
            f"inference_log_g{group_id}"
        )
    paused = api.post(f"{URL}fraud-screen/status/", {"status": "paused"})
    assert paused.json()["status"] == "paused"
    assert paused.json()["inference_table"] == f"inference_log_g{group_id}"


def test_status_active_with_bad_weights_is_400_and_nothing_changes(api, versions):
    _create(
        api,
        versions,
        initial_members=[
            {"version_id": versions["champion"], "role": "champion", "weight": 70},
            {"version_id": versions["challenger"], "role": "challenger", "weight": 20},
        ],
    )

    response = api.post(f"{URL}fraud-screen/status/", {"status": "active"})
    unknown = api.post(f"{URL}fraud-screen/status/", {"status": "live"})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "members": ["the weights of active members sum to 90, not 100"]
    }
    assert unknown.status_code == 400
    assert list(unknown.json()["error"]["fields"]) == ["status"]
    group = _group("fraud-screen")
    assert group.status == "draft"
    with schema_context("alpha"):
        assert not InferenceTable.objects.filter(group=group).exists()


def test_viewers_read_but_may_not_write(tenant_a, make_user, api_client, versions):
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    members = {
        "members": [
            {"version_id": versions["champion"], "role": "champion", "weight": 100}
        ]
    }

    assert viewer.get(URL).status_code == 200
    assert viewer.get(f"{URL}{DEMO_GROUP}/").status_code == 200
    refused = [
        viewer.post(URL, {"name": "Nope"}, format="json"),
        viewer.patch(f"{URL}{DEMO_GROUP}/", {"description": "x"}, format="json"),
        viewer.put(f"{URL}{DEMO_GROUP}/members/", members, format="json"),
        viewer.post(f"{URL}{DEMO_GROUP}/status/", {"status": "paused"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert refused[0].json()["error"]["message"] == (
        "This needs the editor role; you are viewer."
    )
    assert _group(DEMO_GROUP).status == "active"
    with schema_context("alpha"):
        assert not ModelGroup.objects.filter(name="Nope").exists()


def test_editors_write(api, versions):
    assert _create(api, versions).status_code == 201
    assert (
        api.patch(
            f"{URL}fraud-screen/", {"description": "x"}, format="json"
        ).status_code
        == 200
    )


def test_a_predict_key_may_predict_but_not_manage_groups(
    tenant_a, make_key, api_client, demo_group
):
    _, raw = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=raw)

    refused = [
        client.get(URL),
        client.get(f"{URL}{DEMO_GROUP}/"),
        client.post(URL, {"name": "Nope"}, format="json"),
        client.post(f"{URL}{DEMO_GROUP}/status/", {"status": "paused"}),
    ]
    predicted = client.post(
        f"{URL}{DEMO_GROUP}/predict/", {"inputs": demo_rows(1)[0]}, format="json"
    )

    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert refused[0].json()["error"]["message"] == (
        "This API key's scope 'predict' does not allow this."
    )
    assert predicted.status_code == 200, predicted.content
    assert predicted.json()["served"]["model"] == "breast-cancer-classifier"


def test_a_manage_key_manages_groups(tenant_a, make_key, api_client, versions):
    _, raw = make_key(tenant_a, scope="manage")
    client = api_client(tenant_a, key=raw)

    response = _create(client, versions)

    assert response.status_code == 201
    assert response.json()["slug"] == "fraud-screen"


def test_another_tenants_group_is_404_through_this_tenants_host(
    tenant_b, make_user, api_client, api, demo_group
):
    with schema_context("beta"):
        group_create(name="Beta only", slug="beta-only", actor="test")
    beta = api_client(tenant_b, user=make_user(tenant_b, "editor"))

    assert api.get(f"{URL}beta-only/").status_code == 404
    assert api.patch(f"{URL}beta-only/", {"description": "x"}).status_code == 404
    assert api.post(f"{URL}beta-only/status/", {"status": "active"}).status_code == 404
    assert "beta-only" not in [g["slug"] for g in api.get(URL).json()["results"]]
    assert beta.get(f"{URL}beta-only/").status_code == 200
    assert beta.get(f"{URL}{DEMO_GROUP}/").status_code == 404
    assert [g["slug"] for g in beta.get(URL).json()["results"]] == ["beta-only"]


def test_create_members_and_status_are_audited_with_the_request_id(
    api, editor, versions
):
    created = _create(api, versions)
    group_id = created.json()["id"]
    members = api.put(
        f"{URL}fraud-screen/members/",
        {
            "members": [
                {"version_id": versions["champion"], "role": "champion", "weight": 60},
                {
                    "version_id": versions["challenger"],
                    "role": "challenger",
                    "weight": 40,
                },
            ]
        },
        format="json",
    )
    status = api.post(f"{URL}fraud-screen/status/", {"status": "active"})

    assert members.status_code == 200 and status.status_code == 200
    assert audit_of(group_id) == [
        ("group.create", "editor@alpha.test"),
        ("group.members", "editor@alpha.test"),
        ("group.members", "editor@alpha.test"),
        ("group.status", "editor@alpha.test"),
    ]
    from apps.audit.models import AuditEvent

    with schema_context("alpha"):
        events = AuditEvent.objects.filter(
            object_type="groups.modelgroup", object_id=str(group_id)
        ).order_by("id")
        assert [e.request_id for e in events] == [
            created["X-Request-ID"],
            created["X-Request-ID"],
            members["X-Request-ID"],
            status["X-Request-ID"],
        ]
        last_members = events.filter(action="group.members").last()
        assert last_members is not None
        assert last_members.before["members"][0]["weight"] == 70
        assert last_members.after["members"][0]["weight"] == 60
        assert events.last().after == {"status": "active"}  # type: ignore[union-attr]
