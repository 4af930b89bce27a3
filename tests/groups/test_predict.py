"""The REST and OIP v2 doors on a real scikit-learn group: validation, routing,
outputs, logging of every answer, feedback."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django_tenants.utils import schema_context

from apps.tenants.demo import DEMO_GROUP, demo_labels, demo_rows, seed_demo_content


@pytest.fixture
def group(tenant_a, trained):
    with schema_context("alpha"):
        return seed_demo_content(actor="test")


@pytest.fixture
def client(tenant_a, make_key, api_client, group):
    _, key = make_key(tenant_a, scope="predict")
    return api_client(tenant_a, key=key)


def _row(group_id: int, request_id: str) -> dict:
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT role, status, door, requester, input, output, member_id, feedback "
            f"FROM inference_log_g{group_id} WHERE request_id = %s",
            [request_id],
        )
        row = cursor.fetchone()
    keys = [
        "role",
        "status",
        "door",
        "requester",
        "input",
        "output",
        "member_id",
        "feedback",
    ]
    out = dict(zip(keys, row, strict=True)) if row else {}
    for k in ("input", "output", "feedback"):
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


def test_predict_returns_a_routed_prediction_that_is_a_row_in_the_groups_table(
    client, group
):
    response = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert uuid.UUID(body["request_id"]).version == 7
    assert body["request_id"] == response["X-Request-ID"]
    assert body["served"]["role"] in ("champion", "challenger")
    assert body["served"]["model"] == "breast-cancer-classifier"
    assert body["outputs"]["prediction"] in (0, 1)
    assert set(body["outputs"]["probabilities"]) == {"0", "1"}
    row = _row(group.pk, body["request_id"])
    assert row["status"] == "ok" and row["door"] == "rest"
    assert row["role"] == body["served"]["role"]
    assert row["member_id"] == body["served"]["member_id"]
    assert row["output"] == body["outputs"]
    assert row["requester"].startswith("api-key:")


def test_batch_predictions_answer_every_row(client):
    response = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(5), "routing_key": "patient-7"},
        format="json",
    )
    outputs = response.json()["outputs"]

    assert len(outputs) == 5
    # Both models are good: they agree with the dataset's labels on these rows.
    assert [o["prediction"] for o in outputs] == demo_labels(5)


def test_missing_extra_and_mistyped_features_are_named(client, group):
    row = demo_rows(1)[0]
    del row["mean_radius"]
    row["mean_texture"] = "high"
    row["shoe_size"] = 42

    response = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/", {"inputs": row}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "inputs.mean_radius": ["missing"],
        "inputs.mean_texture": ["expected a number, got str"],
        "inputs.shoe_size": ["not a feature of this model"],
    }


def test_oversized_body_is_413(client):
    with override_settings(PREDICT_MAX_BODY_BYTES=1000):
        response = client.post(
            f"/api/v1/groups/{DEMO_GROUP}/predict/",
            {"inputs": demo_rows(20)},
            format="json",
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_sticky_routing_key_keeps_its_member(client):
    served = {
        client.post(
            f"/api/v1/groups/{DEMO_GROUP}/predict/",
            {"inputs": demo_rows(1)[0], "routing_key": "user-42"},
            format="json",
        ).json()["served"]["member_id"]
        for _ in range(10)
    }
    assert len(served) == 1


def test_feedback_joins_by_request_id_and_reports_unknown_ids(client, group):
    rid = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
    ).json()["request_id"]
    unknown = str(uuid.UUID(int=(uuid.UUID(rid).int + 1)))

    one = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/feedback/",
        {"request_id": rid, "label": 0},
        format="json",
    )
    batch = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/feedback/",
        {
            "items": [
                {"request_id": rid, "label": 1},
                {"request_id": unknown, "label": 0},
                {"request_id": "nonsense", "value": 1.5},
            ]
        },
        format="json",
    )

    assert one.status_code == 200 and one.json() == {
        "updated": 1,
        "unknown": [],
        "invalid": [],
    }
    assert batch.status_code == 207
    assert batch.json() == {"updated": 1, "unknown": [unknown], "invalid": ["nonsense"]}
    assert _row(group.pk, rid)["feedback"] == {"label": 1}


def test_a_label_with_a_nul_character_is_refused_by_name(client, group):
    rid = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
    ).json()["request_id"]

    single = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/feedback/",
        {"request_id": rid, "label": "a\u0000"},
        format="json",
    )
    batch = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/feedback/",
        {"items": [{"request_id": rid, "label": {"x": "\u0000"}}]},
        format="json",
    )

    assert single.status_code == 400
    assert "label" in single.json()["error"]["fields"]
    assert batch.status_code == 400
    assert "items.0.label.x" in batch.json()["error"]["fields"]
    assert _row(group.pk, rid)["feedback"] is None


def test_predict_key_of_another_tenant_and_unknown_group_are_refused(
    tenant_b, make_key, api_client, client
):
    _, other = make_key(tenant_b, scope="predict")
    assert (
        api_client(tenant_b, key=other)
        .post(f"/api/v1/groups/{DEMO_GROUP}/predict/", {"inputs": {}}, format="json")
        .status_code
        == 404
    )
    assert (
        client.post(
            "/api/v1/groups/nope/predict/", {"inputs": {}}, format="json"
        ).status_code
        == 404
    )


def test_oip_v2_infer_as_the_spec_describes(client, group):
    rows = demo_rows(2)
    names = list(rows[0])
    request = {
        "id": "42",
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, len(names)],
                "datatype": "FP64",
                "data": [row[n] for row in rows for n in names],
            }
        ],
    }

    ready = client.get(f"/v2/models/{DEMO_GROUP}/ready")
    metadata = client.get(f"/v2/models/{DEMO_GROUP}").json()
    response = client.post(f"/v2/models/{DEMO_GROUP}/infer", request, format="json")

    assert (
        ready.status_code == 200 and client.get("/v2/health/ready").status_code == 200
    )
    assert metadata["name"] == DEMO_GROUP
    assert [i["name"] for i in metadata["inputs"]] == names
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP64"}
    body = response.json()
    assert response.status_code == 200, body
    assert body["model_name"] == DEMO_GROUP and body["id"] == "42"
    predict = next(o for o in body["outputs"] if o["name"] == "predict")
    proba = next(o for o in body["outputs"] if o["name"] == "predict_proba")
    assert predict == {
        "name": "predict",
        "shape": [2],
        "datatype": "INT64",
        "data": demo_labels(2),
    }
    assert (
        proba["shape"] == [2, 2]
        and proba["datatype"] == "FP64"
        and len(proba["data"]) == 4
    )
    row = _row(group.pk, body["parameters"]["request_id"])
    assert row["door"] == "oip" and len(row["input"]) == 2


def test_oip_named_feature_tensors_and_bad_shapes(client):
    row = demo_rows(1)[0]
    named = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
            for n, v in row.items()
        ]
    }
    bad = {
        "inputs": [
            {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0]}
        ]
    }

    assert client.post(f"/v2/models/{DEMO_GROUP}/infer", named, format="json").json()[
        "outputs"
    ][0]["data"] == demo_labels(1)
    response = client.post(f"/v2/models/{DEMO_GROUP}/infer", bad, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "inputs.0.data": ["2 values do not fill shape [1, 3]"]
    }


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_model_answer_that_is_not_finite_is_a_logged_422(
    tenant_a, make_key, api_client
):
    # A linear model sends 1e308 + 1e308 to infinity, which JSON cannot carry.
    from sklearn.linear_model import LinearRegression

    group = _active_group("lr", [("lr", LinearRegression(), "champion", 100)])
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)

    huge = client.post(
        "/api/v1/groups/lr/predict/",
        {"inputs": {"a": 1e308, "b": 1e308}},
        format="json",
    )
    fine = client.post(
        "/api/v1/groups/lr/predict/", {"inputs": {"a": 1.0, "b": 1.0}}, format="json"
    )

    assert huge.status_code == 422, huge.content
    assert huge.json()["error"]["code"] == "model_error"
    assert "not finite" in huge.json()["error"]["message"]
    assert fine.status_code == 200 and fine.json()["outputs"][
        "prediction"
    ] == pytest.approx(2.0)
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, error_code, input FROM inference_log_g{group.pk} "
            "ORDER BY ts"
        )
        rows = cursor.fetchall()
    assert [(r[0], r[1]) for r in rows] == [("error", "model_error"), ("ok", None)]
    logged = rows[0][2]
    logged = json.loads(logged) if isinstance(logged, str) else logged
    assert {k: float(v) for k, v in logged.items()} == {"a": 1e308, "b": 1e308}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_failing_challenger_falls_back_to_the_champion_and_both_rows_are_kept(
    tenant_a, make_key, api_client
):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    group = _active_group(
        "fallback",
        [
            ("logistic", LogisticRegression(), "champion", 0),  # stays finite
            ("linear", LinearRegression(), "challenger", 100),  # 1e308 + 1e308: inf
        ],
        traffic_config={"sticky": False, "fallback_to_champion": True},
    )
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)

    response = client.post(
        "/api/v1/groups/fallback/predict/",
        {"inputs": {"a": 1e308, "b": 1e308}},
        format="json",
    )

    assert response.status_code == 200, response.content
    request_id = response.json()["request_id"]
    assert response.json()["served"]["role"] == "champion"
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_id::text, client_request_id, role, status, error_code "
            f"FROM inference_log_g{group.pk} ORDER BY ts, status"
        )
        rows = cursor.fetchall()
    failed, answered = sorted(rows, key=lambda r: r[3])  # "error" < "ok"
    assert answered == (request_id, None, "champion", "ok", "fallback")
    assert failed[1:] == (request_id, "challenger", "error", "model_error")
    assert failed[0] != request_id  # its own id, naming the request it served


def test_a_caller_sending_the_same_request_id_twice_gets_two_logged_answers(
    tenant_a, make_key, api_client, trained
):
    """A client that retries with its X-Request-ID (a UUIDv7, which becomes the row's
    key) gets a second answer, logged under a fresh id naming the first."""
    from apps.core.context import new_request_id

    with schema_context("alpha"):
        group = seed_demo_content(actor="test")
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    caller_id = new_request_id()
    body = {"inputs": demo_rows(1)[0]}

    answers = [
        client.post(
            f"/api/v1/groups/{DEMO_GROUP}/predict/",
            body,
            format="json",
            HTTP_X_REQUEST_ID=caller_id,
        )
        for _ in range(2)
    ]

    assert [a.status_code for a in answers] == [200, 200], answers[1].content
    first, second = (a.json()["request_id"] for a in answers)
    assert first == caller_id and second != caller_id
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_id::text, client_request_id "
            f"FROM inference_log_g{group.pk} ORDER BY ts, request_id"
        )
        rows = cursor.fetchall()
    assert sorted(rows) == sorted([(caller_id, None), (second, caller_id)])


def _active_group(
    name: str, models: list[tuple[str, Any, str, int]], **fields: Any
) -> Any:
    """An active group in tenant alpha of scikit-learn models fitted on two number
    features, a and b; `models`: (name, estimator, role, weight) each."""
    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from skops.io import dumps

    from apps.groups.services import group_create, group_set_status, members_set
    from apps.registry.uploads import version_upload

    features = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    schema = [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]
    with schema_context("alpha"):
        members = []
        for label, model, role, weight in models:
            version = version_upload(
                file=SimpleUploadedFile(
                    f"{label}.skops", dumps(model.fit(features, [0, 2, 2]))
                ),
                actor="test",
                model_name=label,
                input_schema=schema,
            )
            members.append({"version_id": version.pk, "role": role, "weight": weight})
        group = group_create(name=name, actor="test", **fields)
        members_set(group=group, members=members, actor="test")
        group_set_status(group=group, status="active", actor="test")
    return group


@pytest.mark.parametrize(
    "shape",
    ["urn:uuid:{}", "upper", "hex"],
    ids=["urn", "upper-case", "no dashes"],
)
def test_a_request_id_that_is_a_uuid7_in_another_spelling_is_kept_aside(
    tenant_a, make_key, api_client, trained, shape
):
    """Only the canonical spelling of a UUIDv7 becomes the row's key: another spelling
    of one (which Python reads, and PostgreSQL may not: a urn: prefix was a 400 naming
    `query`, after the model had answered) is the client's id."""
    from apps.core.context import new_request_id

    with schema_context("alpha"):
        group = seed_demo_content(actor="test")
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    canonical = new_request_id()
    sent = {
        "upper": canonical.upper(),
        "hex": canonical.replace("-", ""),
    }.get(shape) or shape.format(canonical)

    response = client.post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
        HTTP_X_REQUEST_ID=sent,
    )

    assert response.status_code == 200, response.content
    assert response["X-Request-ID"] == sent
    request_id = response.json()["request_id"]
    assert request_id != sent
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT request_id::text, client_request_id FROM inference_log_g{group.pk}"
        )
        assert cursor.fetchall() == [(request_id, sent)]
