"""Background explanations: a batch is converted, stored and folded into the global
importance at once, with exactly the values the row-by-row explanation gives."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.inference.explain import (
    VersionExplainer,
    build_explainer,
    explain_rows,
    explainer_cache_clear,
)
from apps.inference.importance import importance_add, importance_add_values
from apps.inference.tasks import _json_text, _json_values, explain_pending
from apps.registry.models import FeatureImportance, ModelVersion
from apps.tenants.demo import demo_rows, seed_demo_content


@pytest.fixture
def demo_group(tenant_a, trained):
    from apps.groups.serving import clear_route_cache

    clear_route_cache()
    explainer_cache_clear()
    try:
        with schema_context("alpha"):
            yield seed_demo_content(actor="test")
    finally:
        explainer_cache_clear()


def _matrix(rows: list[dict[str, float]]) -> np.ndarray:
    return np.asarray([list(r.values()) for r in rows], dtype=float)


def _row_by_row(
    explainer: VersionExplainer, values: np.ndarray, base: np.ndarray
) -> list[dict[str, Any]]:
    """The explanations as they were built one row at a time."""
    out = []
    for row_values, row_base in zip(values, base, strict=True):
        base_value = float(row_base)
        out.append(
            {
                "method": explainer.method,
                "output_space": explainer.output_space,
                "target": explainer.target_label,
                "base_value": base_value,
                "output": base_value + float(np.sum(row_values)),
                "values": {
                    name: float(v)
                    for name, v in zip(explainer.feature_names, row_values, strict=True)
                },
            }
        )
    return out


@pytest.mark.parametrize("kind", ["tree", "linear"])
def test_a_batch_is_formatted_exactly_as_row_by_row(trained, kind):
    rows = demo_rows(300)
    names = list(rows[0])
    if kind == "tree":
        explainer = build_explainer(trained[1][1], names, background=None)
    else:
        background = _matrix(demo_rows(100, offset=200))
        explainer = build_explainer(trained[0][1], names, background=background)
    values, base = explainer.shap_values(_matrix(rows))

    formatted = explainer.format(values, base)

    expected = _row_by_row(explainer, values, base)
    assert formatted == expected
    assert [list(item) for item in formatted] == [list(item) for item in expected]
    assert [list(item["values"]) for item in formatted] == [names] * len(rows)
    for item in formatted:
        assert item["base_value"] + sum(item["values"].values()) == pytest.approx(
            item["output"], abs=1e-9
        )
    # Whatever layout and precision an explainer hands back.
    narrow = np.asfortranarray(values.astype(np.float32))
    narrow_base = base.astype(np.float32)
    assert explainer.format(narrow, narrow_base) == _row_by_row(
        explainer, narrow, narrow_base
    )


def test_importance_from_the_matrix_equals_the_sums_of_the_explanations(
    demo_group, trained
):
    rows = demo_rows(569)
    names = list(rows[0])
    explainer = build_explainer(trained[1][1], names, background=None)
    values, base = explainer.shap_values(_matrix(rows))
    champion, challenger = ModelVersion.objects.order_by("number")[:2]

    importance_add(champion.pk, explainer.format(values, base))
    importance_add_values(challenger.pk, names, values)

    def stored(version: ModelVersion) -> list[tuple[str, float, int]]:
        return list(
            FeatureImportance.objects.filter(version=version)
            .order_by("feature")
            .values_list("feature", "abs_sum", "count")
        )

    assert stored(challenger) == stored(champion)
    assert len(stored(challenger)) == 30 and stored(challenger)[0][2] == 569


def test_jsonb_text_of_a_batch_is_parsed_once_with_the_same_values():
    texts = ['{"a": 1.5}', "[1, 2]", '{"b": null}']

    assert _json_values(texts) == [{"a": 1.5}, [1, 2], {"b": None}]
    assert _json_values([texts[0], {"c": 2}, None]) == [{"a": 1.5}, {"c": 2}, None]


def test_jsonb_text_beyond_orjson_is_read_as_the_standard_library_reads_it():
    assert _json_values(["[1e400]", '{"a": 0.1}']) == [[float("inf")], {"a": 0.1}]


def test_a_batch_is_encoded_to_the_jsonb_json_dumps_gives(trained, db):
    rows = demo_rows(200)
    explainer = build_explainer(trained[1][1], list(rows[0]), background=None)
    documents: list[Any] = explainer.format(*explainer.shap_values(_matrix(rows)))
    documents += [{"error": "only scikit-learn (skops) versions are explained é"}]
    documents += [documents[:3], {"x": [1e16, 1e-7, -0.0, 100.0, 5e-324, 2**40]}]
    standard = json.dumps(documents, separators=(",", ":"))

    encoded = _json_text(documents)

    assert json.loads(encoded) == documents
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a::text = b::text FROM ROWS FROM (jsonb_array_elements(%s::jsonb),"
            " jsonb_array_elements(%s::jsonb)) AS u(a, b)",
            [encoded, standard],
        )
        assert [r[0] for r in cursor.fetchall()] == [True] * len(documents)
    # A number orjson cannot write: exactly what json.dumps writes.
    big = [{"target": 2**70}]
    assert _json_text(big) == json.dumps(big, separators=(",", ":"))


def test_the_matrix_is_the_same_by_itemgetter_or_value_by_value():
    from apps.groups.serving import _matrix

    rows = demo_rows(50)
    schema = [{"name": name, "type": "number"} for name in rows[0]]
    partial = dict(list(rows[1].items())[1:])  # a feature missing: NaN
    for given in (rows, [*rows[:3], partial], [rows[0]], []):
        expected = np.asarray(
            [[row.get(f["name"]) for f in schema] for row in given], dtype=float
        )
        got = _matrix(schema, given)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(AttributeError):
        _matrix(schema, [rows[0], [1.0, 2.0]])


def _insert(table: str, version_id: int, value: Any, *, sampled: bool = True) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (request_id, ts, version_id, status, input, "
            "explain_requested) VALUES (gen_random_uuid(), "
            "clock_timestamp(), %s, 'ok', %s::jsonb, %s) RETURNING request_id::text",
            [version_id, json.dumps(value), sampled],
        )
        return cursor.fetchone()[0]


def test_background_explanations_equal_the_row_by_row_ones_for_every_input_shape(
    demo_group, trained
):
    table = f"inference_log_g{demo_group.pk}"
    champion, challenger = ModelVersion.objects.order_by("number")[:2]
    rows = demo_rows(12)
    partial = dict(list(rows[11].items())[1:])  # a feature missing: explained as NaN
    given: dict[str, tuple[int, Any]] = {}
    for row in rows[:5]:
        given[_insert(table, challenger.pk, row)] = (challenger.pk, row)
    given[_insert(table, challenger.pk, rows[5:8])] = (challenger.pk, rows[5:8])
    given[_insert(table, challenger.pk, [rows[8]])] = (challenger.pk, [rows[8]])
    given[_insert(table, challenger.pk, partial)] = (challenger.pk, partial)
    for row in rows[9:11]:
        given[_insert(table, champion.pk, row)] = (champion.pk, row)
    unsampled = _insert(table, challenger.pk, rows[0], sampled=False)

    done = explain_pending(demo_group.pk, batch=4)
    again = explain_pending(demo_group.pk, batch=4)

    assert done == len(given) == 10 and again == 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT request_id::text, explanation, explain_requested FROM {table}"
        )
        stored = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
    assert stored.pop(unsampled) == (None, False)
    assert set(stored) == set(given)
    for request_id, (version_id, value) in given.items():
        text, requested = stored[request_id]
        expected = (
            explain_rows(version_id, value)
            if isinstance(value, list)
            else explain_rows(version_id, [value])[0]
        )
        assert json.loads(text) == json.loads(json.dumps(expected)) and not requested
    tree = json.loads(stored[next(iter(given))][0])
    margin = trained[1][1].decision_function(_matrix(rows[:1]))[0]
    assert tree["output"] == pytest.approx(float(margin), abs=1e-9)
    assert tree["base_value"] + sum(tree["values"].values()) == pytest.approx(
        tree["output"], abs=1e-9
    )
    counts = dict(
        FeatureImportance.objects.filter(feature="mean_radius").values_list(
            "version_id", "count"
        )
    )
    assert counts == {challenger.pk: 5 + 3 + 1 + 1, champion.pk: 2}


def _scans(relname: str) -> tuple[int, int]:
    """(sequential, index) scans of a table in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables "
            "WHERE relname = %s",
            [relname],
        )
        return cursor.fetchone()


def test_finding_the_pending_rows_reads_the_partial_index_not_the_table(
    demo_group, trained
):
    from datetime import UTC, datetime

    from apps.inference.tables import partition_name

    table = f"inference_log_g{demo_group.pk}"
    today = partition_name(demo_group.pk, datetime.now(UTC).date())
    challenger = ModelVersion.objects.order_by("number")[1]
    row = demo_rows(1)[0]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (request_id, ts, version_id, status, input) "
            "SELECT gen_random_uuid(), clock_timestamp(), %s, 'ok', %s::jsonb "
            "FROM generate_series(1, 5000)",
            [challenger.pk, json.dumps(row)],
        )
    pending = {_insert(table, challenger.pk, row) for _ in range(3)}
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    seq_before, index_before = _scans(today)

    assert explain_pending(demo_group.pk, batch=100) == len(pending)

    seq_after, index_after = _scans(today)
    assert seq_after == seq_before and index_after > index_before


def test_an_explained_row_is_stored_without_compression(demo_group, trained):
    # ~2 KB with its SHAP values: past PostgreSQL's default 2 KB, each background
    # UPDATE compressed it; the partitions keep rows up to ~4 KB as they are.
    table = f"inference_log_g{demo_group.pk}"
    challenger = ModelVersion.objects.order_by("number")[1]
    request_id = _insert(table, challenger.pk, demo_rows(1)[0])

    assert explain_pending(demo_group.pk, batch=10) == 1

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_column_compression(explanation), pg_column_size(t.*) "
            f"FROM {table} AS t WHERE request_id = %s",
            [request_id],
        )
        compression, size = cursor.fetchone()
    assert compression is None and size > 2032


def _stored_explanations(table: str, request_ids: set[str]) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT request_id::text, explanation, explain_requested FROM {table} "
            "WHERE request_id::text = ANY(%s)",
            [list(request_ids)],
        )
        return {
            r[0]: (json.loads(r[1]) if isinstance(r[1], str) else r[1], r[2])
            for r in cursor.fetchall()
        }


def test_rows_that_cannot_be_explained_keep_the_reason_and_leave_the_queue(
    demo_group, trained, monkeypatch
):
    # Whatever goes wrong in one batch must not make every later pass take (and fail
    # on) the same rows again.
    table = f"inference_log_g{demo_group.pk}"
    challenger = ModelVersion.objects.order_by("number")[1]
    row = demo_rows(1)[0]
    failing = {_insert(table, challenger.pk, row) for _ in range(2)}

    def broken(version_id, rows, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("Input contains NaN")

    monkeypatch.setattr("apps.inference.explain.explain_batch", broken)

    assert explain_pending(demo_group.pk, batch=10) == 2
    assert explain_pending(demo_group.pk, batch=10) == 0
    stored = _stored_explanations(table, failing)
    assert {v[1] for v in stored.values()} == {False}
    assert {v[0]["error"] for v in stored.values()} == {
        "explanation failed: ValueError: Input contains NaN"
    }


def test_an_explanation_that_is_not_finite_is_an_error_and_spares_the_importance(
    demo_group, trained, monkeypatch
):
    from apps.inference import explain

    table = f"inference_log_g{demo_group.pk}"
    challenger = ModelVersion.objects.order_by("number")[1]
    pending = {_insert(table, challenger.pk, row) for row in demo_rows(3)}
    real = explain.explain_batch

    def with_nan(version_id, rows, **kwargs):  # type: ignore[no-untyped-def]
        explained = real(version_id, rows, **kwargs)
        explained.values[0, 0] = np.nan
        return explained

    monkeypatch.setattr("apps.inference.explain.explain_batch", with_nan)

    assert explain_pending(demo_group.pk, batch=10) == 3
    stored = _stored_explanations(table, pending)
    assert {v[0]["error"] for v in stored.values()} == {
        "the explanation holds a number that is not finite"
    }
    assert not FeatureImportance.objects.filter(version_id=challenger.pk).exists()
