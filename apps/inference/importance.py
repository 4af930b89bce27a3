"""Global importance per version (mean |SHAP|), kept up to date incrementally."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection

from apps.registry.models import FeatureImportance


def importance_add(version_id: int, explanations: list[dict[str, Any]]) -> None:
    """Fold a batch of explanations into the running sums (one upsert per feature)."""
    sums: dict[str, float] = defaultdict(float)
    for item in explanations:
        for feature, value in (item.get("values") or {}).items():
            sums[feature] += abs(float(value))
    if not sums:
        return
    table = FeatureImportance._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} AS i (version_id, feature, abs_sum, count) "  # noqa: S608
            "VALUES (%s, %s, %s, %s) ON CONFLICT (version_id, feature) DO UPDATE "
            "SET abs_sum = i.abs_sum + EXCLUDED.abs_sum, count = i.count + EXCLUDED.count",
            [(version_id, f, s, len(explanations)) for f, s in sums.items()],
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
