"""Global importance per version (mean |SHAP|), kept up to date incrementally."""

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connection

from apps.registry.models import FeatureImportance

if TYPE_CHECKING:
    import numpy as np


def importance_add(version_id: int, explanations: list[dict[str, Any]]) -> None:
    """Fold a batch of explanations into the running sums (one upsert per feature)."""
    sums: dict[str, float] = defaultdict(float)
    for item in explanations:
        for feature, value in (item.get("values") or {}).items():
            sums[feature] += abs(float(value))
    _importance_upsert(version_id, sums, len(explanations))


def importance_add_values(
    version_id: int, feature_names: list[str], values: np.ndarray, cursor: Any = None
) -> None:
    """importance_add for a batch given as its contributions matrix (rows, features):
    the same sums, added row after row in the same order, without a dict per row.
    `cursor`: a cursor of the connection to write on (in its transaction), whose
    search_path names the tenant's schema; default, Django's connection."""
    import numpy as np  # the pages that only read importance do without it

    if len(values) == 0:
        return
    magnitudes = np.abs(np.asarray(values, dtype=np.float64))
    # accumulate adds strictly row after row (a plain sum may pair rows up and round
    # differently from the running sums importance_add keeps).
    totals = np.add.accumulate(magnitudes, axis=0)[-1].tolist()
    _importance_upsert(
        version_id,
        dict(zip(feature_names, totals, strict=True)),
        len(values),
        cursor=cursor,
    )


def _importance_upsert(
    version_id: int, sums: dict[str, float], count: int, cursor: Any = None
) -> None:
    if not sums:
        return
    table = FeatureImportance._meta.db_table
    # One statement for every feature (in the same order as one upsert each).
    with connection.cursor() if cursor is None else nullcontext(cursor) as writer:
        writer.execute(
            f"INSERT INTO {table} AS i (version_id, feature, abs_sum, count) "  # noqa: S608
            "SELECT %s, f.feature, f.abs_sum, %s FROM ROWS FROM "
            "(unnest(%s::text[]), unnest(%s::float8[])) AS f(feature, abs_sum) "
            "ON CONFLICT (version_id, feature) DO UPDATE "
            "SET abs_sum = i.abs_sum + EXCLUDED.abs_sum, count = i.count + EXCLUDED.count",
            [version_id, count, list(sums), list(sums.values())],
        )


def version_importance(
    version_id: int, *, using: str = DEFAULT_DB_ALIAS
) -> list[dict[str, Any]]:
    """[{feature, mean_abs, count}] strongest first, read through `using`."""
    found = list(FeatureImportance.objects.using(using).filter(version_id=version_id))
    found.sort(key=lambda r: r.mean_abs, reverse=True)
    return [
        {"feature": r.feature, "mean_abs": r.mean_abs, "count": r.count} for r in found
    ]
