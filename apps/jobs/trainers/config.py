"""Training configuration: algorithms, their hyperparameters and the checks against a
dataset's inferred schema. Pure: no ORM, no files."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from apps.core.errors import ApplicationError


@dataclass(frozen=True)
class Param:
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    nullable: bool = False


ALGORITHMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {
        "problems": ("classification",),
        "label": "Logistic regression",
        "params": {
            "C": Param(float, 1.0, 1e-4, 1e4),
            "max_iter": Param(int, 1000, 10, 100_000),
        },
    },
    "linear_regression": {
        "problems": ("regression",),
        "label": "Linear regression",
        "params": {"fit_intercept": Param(bool, True)},
    },
    "random_forest": {
        "problems": ("classification", "regression"),
        "label": "Random forest",
        "params": {
            "n_estimators": Param(int, 100, 1, 2000),
            "max_depth": Param(int, None, 1, 100, nullable=True),
            "min_samples_leaf": Param(int, 1, 1, 1000),
        },
    },
    "gradient_boosting": {
        "problems": ("classification", "regression"),
        "label": "Gradient boosting",
        "params": {
            "n_estimators": Param(int, 100, 1, 10_000),
            "learning_rate": Param(float, 0.1, 1e-4, 1.0),
            "max_depth": Param(int, 3, 1, 20),
            "subsample": Param(float, 1.0, 0.1, 1.0),
        },
    },
}
PROBLEM_TYPES = ("classification", "regression")
MIN_TRAIN_ROWS = 20


def _bad(field: str, message: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_config", fields={field: [message]})


def hyperparameters_clean(algorithm: str, given: Any) -> dict[str, Any]:
    """Defaults filled in, types coerced, ranges checked; unknown names refused."""
    spec = ALGORITHMS[algorithm]["params"]
    given = given or {}
    if not isinstance(given, dict):
        raise _bad("hyperparameters", "An object of name: value.")
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise _bad(
            f"hyperparameters.{unknown[0]}",
            f"Unknown for {algorithm}; known: {', '.join(spec)}.",
        )
    clean: dict[str, Any] = {}
    for name, param in spec.items():
        field = f"hyperparameters.{name}"
        value = given.get(name, param.default)
        if value in (None, "") and (param.nullable or param.default is None):
            clean[name] = None
            continue
        try:
            if param.kind is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "on", "off"):
                        raise ValueError
                    value = value.lower() in ("true", "1", "on")
                value = bool(value)
            elif param.kind is int:
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError
                value = int(float(value))
            else:
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
                if not math.isfinite(value):  # "nan", "inf" or 1e400
                    raise ValueError
        except (TypeError, ValueError, OverflowError):  # int(float("inf")) overflows
            raise _bad(field, f"Must be {param.kind.__name__}.") from None
        if param.low is not None and value < param.low:
            raise _bad(field, f"Must be at least {param.low:g}; got {value}.")
        if param.high is not None and value > param.high:
            raise _bad(field, f"Must be at most {param.high:g}; got {value}.")
        clean[name] = value
    return clean


def training_config_clean(
    config: dict[str, Any],
    *,
    columns: list[dict[str, Any]],
    row_count: int,
) -> dict[str, Any]:
    """The full training configuration checked against the dataset's columns."""
    by_name = {c["name"]: c for c in columns}
    target = config.get("target")
    if not target:
        raise _bad("target", "Required: the column to predict.")
    if target not in by_name:
        raise _bad("target", f"Unknown column '{target}'.")
    target_col = by_name[target]
    features = config.get("features") or [
        c["name"]
        for c in columns
        if c["name"] != target and c["type"] in ("number", "integer", "boolean")
    ]
    if not isinstance(features, list):
        raise _bad("features", "A list of column names.")
    for name in features:
        if name not in by_name:
            raise _bad("features", f"Unknown column '{name}'.")
        if name == target:
            raise _bad("features", "The target cannot also be a feature.")
        if by_name[name]["type"] not in ("number", "integer", "boolean"):
            raise _bad("features", f"Column '{name}' is not numeric.")
    if not features:
        raise _bad("features", "No numeric feature columns besides the target.")
    numeric_target = target_col["type"] in ("number", "integer")
    problem = config.get("problem_type") or (
        "classification"
        if not numeric_target
        or (target_col["type"] == "integer" and target_col["unique"] <= 20)
        else "regression"
    )
    if problem not in PROBLEM_TYPES:
        raise _bad("problem_type", f"One of {', '.join(PROBLEM_TYPES)}.")
    if problem == "regression" and not numeric_target:
        raise _bad("target", f"Column '{target}' is not numeric: cannot regress on it.")
    if problem == "classification" and target_col["unique"] < 2:
        raise _bad("target", f"Column '{target}' has fewer than two classes.")
    algorithm = config.get("algorithm") or "gradient_boosting"
    if algorithm not in ALGORITHMS:
        raise _bad("algorithm", f"One of {', '.join(ALGORITHMS)}.")
    if problem not in ALGORITHMS[algorithm]["problems"]:
        raise _bad("algorithm", f"{algorithm} does not do {problem}.")
    split = config.get("validation_split", 0.2)
    try:
        split = float(split)
    except (TypeError, ValueError):
        raise _bad("validation_split", "A number between 0.05 and 0.5.") from None
    if not 0.05 <= split <= 0.5:
        raise _bad("validation_split", "A number between 0.05 and 0.5.")
    seed = config.get("seed", 42)
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise _bad("seed", "An integer.") from None
    if not 0 <= seed <= 2**32 - 1:
        raise _bad("seed", "Between 0 and 4294967295.")
    usable = row_count - target_col["missing"]
    if usable < MIN_TRAIN_ROWS:
        raise _bad(
            "dataset",
            f"Too few rows: {usable} with a target value; training needs at least "
            f"{MIN_TRAIN_ROWS}.",
        )
    if int(usable * split) < 5:
        raise _bad("validation_split", "The holdout would have fewer than 5 rows.")
    return {
        "target": target,
        "features": list(features),
        "problem_type": problem,
        "algorithm": algorithm,
        "hyperparameters": hyperparameters_clean(
            algorithm, config.get("hyperparameters")
        ),
        "validation_split": split,
        "seed": seed,
        "model_name": str(config.get("model_name") or "")[:200],
        "group": str(config.get("group") or ""),
    }
