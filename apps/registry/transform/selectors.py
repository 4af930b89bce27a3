"""Transformation reads: what the engines can do here, and counts from the rows."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, Q, QuerySet

from apps.providers.models import ProviderConfig
from apps.registry.models import Transformation
from apps.registry.transform.detect import FORMATS
from apps.registry.transform.llm import LLM_KINDS


def llm_providers() -> QuerySet[ProviderConfig]:
    """Enabled providers of a kind that can answer with structured output."""
    return ProviderConfig.objects.filter(enabled=True, kind__in=LLM_KINDS).order_by(
        "name"
    )


def transform_capabilities(*, review_threshold: float) -> dict[str, Any]:
    providers = [{"id": p.pk, "name": p.name, "kind": p.kind} for p in llm_providers()]
    return {
        "formats": [
            {"name": name, "description": text}
            for name, text in FORMATS.items()
            if name != "unknown"
        ],
        "engines": [
            {
                "name": "deterministic",
                "available": True,
                "description": "Rules per known format; no provider call.",
            },
            {
                "name": "llm",
                "available": bool(providers),
                "description": "A provider's LLM with structured output; for unknown "
                "formats or a second opinion.",
            },
        ],
        "llm_providers": providers,
        "review_threshold": review_threshold,
    }


def _counts(rows: QuerySet[Transformation], name: str) -> dict[str, int]:
    return {
        row[name]: row["n"]
        for row in rows.values(name).annotate(n=Count("id")).order_by(name)
    }


def transformation_stats() -> dict[str, Any]:
    rows = Transformation.objects.all()
    totals = rows.aggregate(
        count=Count("id"),
        average=Avg("overall_confidence"),
        review=Count("id", filter=Q(needs_review=True)),
    )
    count = totals["count"] or 0
    return {
        "count": count,
        "by_format": _counts(rows, "detected_format"),
        "by_engine": _counts(rows, "engine"),
        "by_status": _counts(rows, "status"),
        "average_confidence": round(totals["average"], 3)
        if totals["average"] is not None
        else None,
        "review_rate": round(totals["review"] / count, 3) if count else None,
        "pending_review": rows.filter(
            status=Transformation.Status.PENDING_REVIEW
        ).count(),
    }


def transformation_list(*, status: str = "") -> QuerySet[Transformation]:
    rows = Transformation.objects.select_related("target_version__model")
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id")
