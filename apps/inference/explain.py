"""SHAP explanations for local tabular versions.

Tree models get TreeExplainer (exact, no background needed), linear models
LinearExplainer, anything else a permutation explainer; the last two use the
background sample stored with the version (artifact role "background"). A pipeline
whose steps before the model are per-feature scalers is explained on the model with
the scaled inputs, so contributions stay per original feature. Explainers are built
once per version and cached per process; shap is imported only here, lazily.

An explanation: {"method", "output_space", "target", "base_value", "output",
"values": {feature: contribution}} with base_value + sum(values) == output.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.core.db import current_schema
from apps.core.metrics import timed_explanation

FEATUREWISE_STEPS = {"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"}
TREE_MODELS = {
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
}
LINEAR_MODELS = {
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "SGDClassifier",
    "SGDRegressor",
    "RidgeClassifier",
    "LinearSVR",
    "BayesianRidge",
}
PERMUTATION_BACKGROUND = 50  # rows of the background used by the permutation explainer


class ExplanationUnavailable(Exception):
    """This version cannot be explained (and why)."""


@dataclass
class VersionExplainer:
    method: str
    output_space: str
    feature_names: list[str]
    explainer: Any
    transform: Any  # callable applied to the raw matrix before explaining, or None
    target_index: int | None  # column of multi-output values to explain
    target_label: Any

    def shap_values(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contributions (rows, features) and base values (rows,) of the target."""
        data = self.transform(matrix) if self.transform is not None else matrix
        if self.method == "permutation":
            result = self.explainer(data)
            values, base = np.asarray(result.values), np.asarray(result.base_values)
        else:
            values = np.asarray(self.explainer.shap_values(data))
            base = np.asarray(self.explainer.expected_value)
        return _select_target(values, base, self.target_index, len(matrix))

    def explain(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        return self.format(*self.shap_values(matrix))

    def format(self, values: np.ndarray, base: np.ndarray) -> list[dict[str, Any]]:
        """One explanation per row, the batch converted at once to exactly what a
        row-by-row conversion gives: output = base + numpy's sum of the row (numpy
        sums each row of a C-ordered matrix as it sums that row on its own; other
        layouts can round differently, hence the copy)."""
        values = np.ascontiguousarray(values)
        bases = np.asarray(base).astype(np.float64)
        outputs = bases + values.sum(axis=1).astype(np.float64)
        method, space, target = self.method, self.output_space, self.target_label
        names = self.feature_names
        return [
            {
                "method": method,
                "output_space": space,
                "target": target,
                "base_value": base_value,
                "output": output,
                "values": dict(zip(names, row, strict=True)),
            }
            for base_value, output, row in zip(
                bases.tolist(), outputs.tolist(), values.tolist(), strict=True
            )
        ]


def _select_target(
    values: np.ndarray, base: np.ndarray, target: int | None, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise the shapes shap returns to (rows, features) and (rows,)."""
    if isinstance(values, list):  # older shap: one array per class
        values = np.stack(values, axis=-1)
    if values.ndim == 3:
        values = values[:, :, target if target is not None else -1]
    if base.size == 1:
        base = np.full(rows, float(base.reshape(-1)[0]))
    elif base.ndim == 1 and base.shape[0] != rows:  # one base per class
        base = np.full(rows, float(base[target if target is not None else -1]))
    elif base.ndim == 2:
        base = base[:, target if target is not None else -1]
    return values, base


def _unwrap(model: Any) -> tuple[Any, Any]:
    """(final estimator, transform of the raw matrix or None)."""
    steps = getattr(model, "steps", None)
    if not steps:
        return model, None
    prefix = [step for _, step in steps[:-1] if step != "passthrough"]
    if all(type(step).__name__ in FEATUREWISE_STEPS for step in prefix):

        def transform(matrix: np.ndarray) -> np.ndarray:
            for step in prefix:
                matrix = step.transform(matrix)
            return matrix

        return steps[-1][1], transform
    return model, None  # explain the whole pipeline model-agnostically


def build_explainer(
    model: Any, feature_names: list[str], background: np.ndarray | None
) -> VersionExplainer:
    import shap  # costly: only when an explanation is first needed

    estimator, transform = _unwrap(model)
    name = type(estimator).__name__
    classes = list(getattr(estimator, "classes_", []))
    target_index = 1 if len(classes) == 2 else None
    target_label = _plain(classes[1]) if len(classes) == 2 else None
    if name in TREE_MODELS:
        boosted = name.startswith(("GradientBoosting", "HistGradientBoosting"))
        space = ("log_odds" if boosted else "probability") if classes else "raw"
        explainer = shap.TreeExplainer(estimator)
        return VersionExplainer(
            "tree",
            space,
            feature_names,
            explainer,
            transform,
            target_index,
            target_label,
        )
    if background is None:
        raise ExplanationUnavailable(
            "no background sample is stored with this version (upload one as the "
            "'background' file)"
        )
    if name in LINEAR_MODELS:
        data = transform(background) if transform is not None else background
        explainer = shap.LinearExplainer(estimator, data)
        space = "log_odds" if classes else "raw"
        return VersionExplainer(
            "linear",
            space,
            feature_names,
            explainer,
            transform,
            target_index,
            target_label,
        )
    if classes:
        positive = len(classes) - 1 if len(classes) == 2 else 0

        def predict(x: np.ndarray) -> np.ndarray:
            return model.predict_proba(x)[:, positive]

        target_index, space = None, "probability"
    else:
        predict, space = model.predict, "raw"
    masker = shap.maskers.Independent(background[:PERMUTATION_BACKGROUND])
    explainer = shap.explainers.Permutation(predict, masker)
    return VersionExplainer(
        "permutation", space, feature_names, explainer, None, target_index, target_label
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class _Cache:
    """Explainers per (schema, version id, model sha256), a small LRU, thread-safe."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, int, str], VersionExplainer] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, int, str]) -> VersionExplainer | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[str, int, str], value: VersionExplainer) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_explainers = _Cache()


def explainer_cache_clear() -> None:
    _explainers.clear()


def explainer_for_version(
    version_id: int,
    *,
    model_file: Any = None,
    schema: list[dict[str, Any]] | None = None,
) -> VersionExplainer:
    """The cached explainer of a local version (built on first use). The serving
    path passes the model artifact and input schema it already holds, so a cached
    explainer costs no query; otherwise what is missing is read."""
    from apps.groups.serving import _matrix
    from apps.registry.artifacts import artifact_load, artifact_read_verified
    from apps.registry.models import ModelArtifact, ModelVersion

    artifacts: dict[str, Any] | None = None
    if schema is None:
        schema = list(
            ModelVersion.objects.values_list("input_schema", flat=True).get(
                pk=version_id
            )
            or []
        )
    if model_file is None:
        artifacts = {
            a.role: a for a in ModelArtifact.objects.filter(version_id=version_id)
        }
        model_file = artifacts.get(ModelArtifact.Role.MODEL)
    if model_file is None or model_file.format != ModelArtifact.Format.SKOPS:
        raise ExplanationUnavailable("only scikit-learn (skops) versions are explained")
    key = (current_schema(), version_id, model_file.sha256)
    cached = _explainers.get(key)
    if cached is not None:
        return cached
    if artifacts is None:
        artifacts = {
            a.role: a for a in ModelArtifact.objects.filter(version_id=version_id)
        }
    if any(f.get("type") not in ("number", "integer") for f in schema):
        raise ExplanationUnavailable("only numeric feature schemas are explained")
    background = None
    if ModelArtifact.Role.BACKGROUND in artifacts:
        rows = json.loads(
            artifact_read_verified(artifacts[ModelArtifact.Role.BACKGROUND])
        )
        background = _matrix(schema, rows)
    built = build_explainer(
        artifact_load(model_file), [f["name"] for f in schema], background
    )
    _explainers.put(key, built)
    return built


@dataclass
class Explained:
    """A batch's explanations and the contributions matrix they were made from."""

    items: list[dict[str, Any]]
    values: np.ndarray  # (rows, features), columns in feature_names order
    feature_names: list[str]


@timed_explanation
def explain_batch(
    version_id: int, rows: list[dict[str, Any]], *, serving: Any = None
) -> Explained:
    """SHAP values of rows for a version, with the contributions as a matrix (for
    the global importance). `serving` (the serving path's ServingVersion) supplies
    the artifact and schema already in memory."""
    from apps.groups.serving import _matrix
    from apps.registry.models import ModelVersion

    if serving is not None and serving.artifact is not None:
        schema = list(serving.input_schema)
        explainer = explainer_for_version(
            version_id, model_file=serving.artifact, schema=schema
        )
    else:
        schema = list(
            ModelVersion.objects.values_list("input_schema", flat=True).get(
                pk=version_id
            )
            or []
        )
        explainer = explainer_for_version(version_id, schema=schema)
    values, base = explainer.shap_values(_matrix(schema, rows))
    return Explained(explainer.format(values, base), values, explainer.feature_names)


def explain_rows(
    version_id: int, rows: list[dict[str, Any]], *, serving: Any = None
) -> list[dict[str, Any]]:
    """SHAP values of rows for a version (see explain_batch)."""
    return explain_batch(version_id, rows, serving=serving).items
