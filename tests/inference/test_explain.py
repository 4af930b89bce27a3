"""SHAP explanations: additivity for tree and linear models, caching, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from django_tenants.utils import schema_context

from apps.inference.explain import (
    ExplanationUnavailable,
    build_explainer,
    explain_rows,
    explainer_cache_clear,
)
from apps.registry.models import ModelVersion
from apps.tenants.demo import demo_rows, seed_demo_content


def _matrix(rows):
    return np.asarray([list(r.values()) for r in rows], dtype=float)


def test_tree_explanation_adds_up_to_the_models_log_odds(trained):
    _, boosted, _ = trained[1]
    rows = demo_rows(20)
    names = list(rows[0])
    explainer = build_explainer(boosted, names, background=None)

    explained = explainer.explain(_matrix(rows))

    margins = boosted.decision_function(_matrix(rows))
    assert explainer.method == "tree" and explainer.output_space == "log_odds"
    for item, margin in zip(explained, margins, strict=True):
        assert item["base_value"] + sum(item["values"].values()) == pytest.approx(
            item["output"]
        )
        assert item["output"] == pytest.approx(float(margin), abs=1e-6)
        assert set(item["values"]) == set(names) and item["target"] == 1


def test_linear_explanation_through_a_scaling_pipeline_adds_up(trained):
    _, pipeline, _ = trained[0]
    rows = demo_rows(20)
    background = _matrix(demo_rows(100, offset=200))
    explainer = build_explainer(pipeline, list(rows[0]), background=background)

    explained = explainer.explain(_matrix(rows))

    margins = pipeline.decision_function(_matrix(rows))
    assert explainer.method == "linear"
    for item, margin in zip(explained, margins, strict=True):
        assert item["output"] == pytest.approx(float(margin), abs=1e-6)


def test_other_models_are_explained_by_permutation_on_probability():
    from sklearn.neighbors import KNeighborsClassifier

    from apps.tenants.demo import demo_labels

    rows = [dict(list(r.items())[:5]) for r in demo_rows(60)]
    x = _matrix(rows)
    model = KNeighborsClassifier(n_neighbors=5).fit(x, demo_labels(60))
    explainer = build_explainer(model, list(rows[0]), background=x[:20])

    item = explainer.explain(x[:2])[0]

    assert explainer.method == "permutation" and explainer.output_space == "probability"
    assert item["output"] == pytest.approx(
        float(model.predict_proba(x[:1])[0, 1]), abs=1e-6
    )


def test_a_linear_model_without_background_is_refused_with_the_reason(trained):
    _, pipeline, _ = trained[0]
    with pytest.raises(ExplanationUnavailable, match="no background sample"):
        build_explainer(pipeline, list(demo_rows(1)[0]), background=None)


def test_registered_versions_are_explained_from_their_stored_files(tenant_a, trained):
    explainer_cache_clear()
    with schema_context("alpha"):
        seed_demo_content(actor="test")
        champion, challenger = ModelVersion.objects.order_by("number")[:2]
        linear = explain_rows(champion.pk, demo_rows(3))
        tree = explain_rows(challenger.pk, demo_rows(3))
    assert [e["method"] for e in linear + tree] == ["linear"] * 3 + ["tree"] * 3


@pytest.fixture
def demo_group(tenant_a, trained):
    from apps.groups.serving import clear_route_cache

    clear_route_cache()
    with schema_context("alpha"):
        return seed_demo_content(actor="test")


def test_predict_with_explain_returns_and_stores_additive_values(
    demo_group, make_key, tenant_a, api_client
):
    from django.db import connection

    from apps.inference.importance import version_importance

    _, key = make_key(tenant_a, scope="predict")
    body = (
        api_client(tenant_a, key=key)
        .post(
            "/api/v1/groups/breast-cancer/predict/",
            {"inputs": demo_rows(1)[0], "explain": True, "routing_key": "x"},
            format="json",
        )
        .json()
    )

    explanation = body["explanation"]
    assert explanation["base_value"] + sum(explanation["values"].values()) == (
        pytest.approx(explanation["output"])
    )
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT explanation->>'method' FROM inference_log_g{demo_group.pk} "
            "WHERE request_id = %s",
            [body["request_id"]],
        )
        assert cursor.fetchone()[0] == explanation["method"]
        ranked = version_importance(body["served"]["version_id"])
    assert len(ranked) == 30 and ranked[0]["count"] == 1
    assert ranked[0]["mean_abs"] == max(abs(v) for v in explanation["values"].values())


def test_background_sample_rate_is_honoured_and_sampled_rows_get_explained(
    demo_group, make_key, tenant_a, api_client
):
    import random

    from django.db import connection

    from apps.core.tasks import run_in_tenant
    from apps.groups.services import group_update

    with schema_context("alpha"):
        group_update(
            group=demo_group,
            actor="t",
            traffic_config={"sticky": False, "explain_sample_rate": 0.25},
        )
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    random.seed(5)
    rows = demo_rows(200)
    for row in rows:
        client.post(
            "/api/v1/groups/breast-cancer/predict/", {"inputs": row}, format="json"
        )

    table = f"inference_log_g{demo_group.pk}"
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE explain_requested")
        sampled = cursor.fetchone()[0]
    # 200 draws at p = 0.25: inside the binomial 99.9 % interval.
    from scipy.stats import binom

    low, high = binom.interval(0.999, 200, 0.25)
    assert low <= sampled <= high

    explained = run_in_tenant(
        "alpha", "apps.inference.tasks.explain_pending", demo_group.pk
    )
    again = run_in_tenant(
        "alpha", "apps.inference.tasks.explain_pending", demo_group.pk
    )

    assert explained == sampled and again == 0
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(f"SELECT explanation FROM {table} WHERE explanation IS NOT NULL")
        import json

        stored = [json.loads(r[0]) for r in cursor.fetchall()]
    assert len(stored) == sampled
    for item in stored:
        assert item["base_value"] + sum(item["values"].values()) == pytest.approx(
            item["output"]
        )


def test_importance_is_served_by_the_api_and_shown_on_the_model_page(
    demo_group, make_key, make_user, tenant_a, api_client, page_client
):
    _, key = make_key(tenant_a, scope="manage")
    client = api_client(tenant_a, key=key)
    body = client.post(
        "/api/v1/groups/breast-cancer/predict/",
        {"inputs": demo_rows(1)[0], "explain": True},
        format="json",
    ).json()
    version_id = body["served"]["version_id"]

    ranked = client.get(f"/api/v1/models/versions/{version_id}/importance/").json()
    page = (
        page_client(tenant_a, make_user(tenant_a, "viewer"))
        .get("/models/breast-cancer-classifier/")
        .content.decode()
    )

    assert [r["count"] for r in ranked] == [1] * 30
    assert ranked[0]["mean_abs"] >= ranked[-1]["mean_abs"]
    assert "Observed importance" in page and ranked[0]["feature"] in page
