"""How complete a version's metadata is: a 0-100 score from weighted checks that
depend on what the model is (an LLM needs a context window, a tabular model an input
schema, a provider's model pricing). Pure: no ORM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.registry.transform.canonical import get_path, known_paths

LLM_TASKS = {
    "chat",
    "completion",
    "text-generation",
    "summarization",
    "translation",
    "question-answering",
}
TABULAR_TASKS = {"classification", "regression"}
HOSTED_PROVIDERS = {"openai", "anthropic", "google"}


@dataclass(frozen=True)
class Profile:
    llm: bool
    tabular: bool
    hosted: bool


@dataclass(frozen=True)
class Check:
    field: str
    weight: int
    applies: Callable[[Profile], bool]
    recommendation: str


def _always(_: Profile) -> bool:
    return True


CHECKS = [
    Check(
        "model_info.task",
        15,
        _always,
        "Set the task: it decides how the model is served, validated and compared.",
    ),
    Check(
        "model_info.architecture",
        8,
        _always,
        "Set the architecture family (transformer, tree_ensemble, linear...).",
    ),
    Check(
        "model_info.modalities",
        3,
        _always,
        "List the modalities the model takes (text, image, tabular...).",
    ),
    Check(
        "description",
        5,
        _always,
        "Describe the model in a sentence or two.",
    ),
    Check(
        "license",
        10,
        _always,
        "Record the license: people need it before they use the model.",
    ),
    Check(
        "performance",
        15,
        _always,
        "Add evaluation metrics (accuracy, f1, rmse, latency...) so that versions "
        "can be compared.",
    ),
    Check(
        "training",
        10,
        lambda p: not p.hosted,
        "Record training info: the dataset, framework and version.",
    ),
    Check(
        "model_info.context_window",
        10,
        lambda p: p.llm,
        "Add the context window: requests longer than it fail.",
    ),
    Check(
        "model_info.max_output_tokens",
        5,
        lambda p: p.llm,
        "Add the maximum output tokens.",
    ),
    Check(
        "model_info.parameter_count",
        3,
        lambda p: p.llm and not p.hosted,
        "Add the parameter count (it sizes the hardware).",
    ),
    Check(
        "input_schema",
        15,
        lambda p: p.tabular,
        "Add the input schema (feature names and types): requests are validated "
        "against it.",
    ),
    Check(
        "output_schema",
        5,
        lambda p: p.tabular,
        "Describe the output (its type and, for a classifier, the labels).",
    ),
    Check(
        "pricing",
        10,
        lambda p: p.hosted,
        "Add pricing per 1k tokens: cost reports use it.",
    ),
]


def profile_of(metadata: dict[str, Any], *, source: str = "") -> Profile:
    info = metadata.get("model_info") if isinstance(metadata, dict) else None
    info = info if isinstance(info, dict) else {}
    task = info.get("task") or ""
    capabilities = info.get("capabilities") or []
    modalities = info.get("modalities") or []
    llm = task in LLM_TASKS or "chat" in capabilities or "completion" in capabilities
    tabular = "tabular" in modalities or task in TABULAR_TASKS
    hosted = info.get("provider") in HOSTED_PROVIDERS
    return Profile(llm=llm, tabular=tabular, hosted=hosted)


def _present(metadata: dict[str, Any], extra: dict[str, Any], path: str) -> bool:
    value = get_path(metadata, path)
    if value in (None, "", [], {}):
        value = extra.get(path)
    return value not in (None, "", [], {})


def quality_of(
    metadata: dict[str, Any], *, extra: dict[str, Any] | None = None, source: str = ""
) -> dict[str, Any]:
    """{score 0..100, missing, present, recommendations, checks}. `extra` holds what a
    version keeps beside its metadata (input_schema, output_schema, performance)."""
    extra = extra or {}
    profile = profile_of(metadata, source=source)
    applicable = [c for c in CHECKS if c.applies(profile)]
    present = {c.field: _present(metadata, extra, c.field) for c in applicable}
    checks = [
        {"field": c.field, "weight": c.weight, "present": present[c.field]}
        for c in applicable
    ]
    total = sum(c.weight for c in applicable)
    earned = sum(c.weight for c in applicable if present[c.field])
    missing = [c.field for c in applicable if not present[c.field]]
    return {
        "score": round(100 * earned / total) if total else 0,
        "missing": missing,
        "present": [c.field for c in applicable if present[c.field]],
        "recommendations": [
            c.recommendation for c in applicable if c.field in set(missing)
        ],
        "checks": checks,
    }


def expand_paths(fields: list[str]) -> list[str]:
    """Section names ("pricing") become their field paths ("pricing.currency"...)."""
    every = known_paths()
    out: list[str] = []
    for name in fields:
        if name in every:
            out.append(name)
        else:
            out.extend(p for p in every if p.startswith(f"{name}."))
    return out
