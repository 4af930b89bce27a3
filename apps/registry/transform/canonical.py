"""Field paths of canonical metadata, validation that keeps what is valid, and the
overall confidence. Pure: no ORM."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

from rest_framework import serializers

from apps.registry.metadata import CanonicalMetadataSerializer, validate_metadata

# Sections whose keys are scored one by one; every other top-level key is one field.
SECTIONS = ("model_info", "training", "performance", "pricing")
# How much a field weighs in the overall confidence (default 1).
FIELD_WEIGHTS: dict[str, float] = {
    "model_info.task": 3.0,
    "model_info.architecture": 2.0,
    "model_info.context_window": 2.0,
    "model_info.provider": 2.0,
    "model_info.external_id": 2.0,
    "input_schema": 3.0,
    "output_schema": 2.0,
    "license": 1.5,
    "model_info.parameter_count": 0.5,
    "model_info.architecture_detail": 0.5,
    "description": 0.5,
}
_DROP = object()


def field_paths(metadata: dict[str, Any]) -> list[str]:
    """`model_info.task`, `training.dataset`, ..., `input_schema`, `license`."""
    paths: list[str] = []
    for key, value in metadata.items():
        if key in SECTIONS and isinstance(value, dict):
            paths.extend(f"{key}.{sub}" for sub in value)
        else:
            paths.append(key)
    return paths


def known_paths() -> list[str]:
    """Every field path the canonical shape has (for enhancement and the LLM)."""
    root = CanonicalMetadataSerializer()
    paths: list[str] = []
    for name, fld in root.fields.items():
        if name in SECTIONS and isinstance(fld, serializers.Serializer):
            paths.extend(f"{name}.{sub}" for sub in fld.fields)
        else:
            paths.append(name)
    return paths


def get_path(metadata: dict[str, Any], path: str) -> Any:
    node: Any = metadata
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_path(metadata: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = metadata
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def overall_confidence(field_confidence: dict[str, float]) -> float:
    """Weighted mean of the field confidences; 0 when there is no field."""
    total = sum(FIELD_WEIGHTS.get(p, 1.0) for p in field_confidence)
    if not total:
        return 0.0
    score = sum(c * FIELD_WEIGHTS.get(p, 1.0) for p, c in field_confidence.items())
    return round(score / total, 3)


def _flatten(detail: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """DRF's nested error detail -> the paths that failed (list indexes as ints)."""
    if isinstance(detail, dict):
        out: list[tuple[Any, ...]] = []
        for key, sub in detail.items():
            step = () if key == "non_field_errors" else (key,)
            out.extend(_flatten(sub, prefix + step))
        return out
    if (
        isinstance(detail, list)
        and detail
        and not all(isinstance(m, str) for m in detail)
    ):
        out = []
        for index, sub in enumerate(detail):
            if sub:
                out.extend(_flatten(sub, (*prefix, index)))
        return out
    return [prefix]


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for v in detail.values() for m in _messages(v)]
    if isinstance(detail, list):
        return [m for v in detail for m in _messages(v)]
    return [str(detail)]


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _error_at(detail: Any, path: tuple[Any, ...]) -> str:
    node = detail
    for part in path:
        if isinstance(node, dict) and "non_field_errors" in node and part not in node:
            node = node["non_field_errors"]
            break
        if not _has(node, part):
            break
        node = node[part]
    messages = _messages(node)
    return messages[0] if messages else "invalid"


def _exists(data: Any, path: tuple[Any, ...]) -> bool:
    node = data
    for part in path:
        if not _has(node, part):
            return False
        node = node[part]
    return True


def _mark(data: Any, path: tuple[Any, ...]) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = _DROP


def _purge(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _purge(v) for k, v in value.items() if v is not _DROP}
    if isinstance(value, list):
        return [_purge(v) for v in value if v is not _DROP]
    return value


def _label(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "metadata"


def _target(data: Any, path: tuple[Any, ...]) -> tuple[Any, ...]:
    """What to drop for an error at `path`: the field itself when present; a feature
    whose name or type is wrong; the provider when it requires a missing field."""
    if (
        len(path) >= 3
        and path[0] in ("input_schema", "output_schema")
        and path[-1] in ("name", "type")
    ):
        return path[:-1]
    if _exists(data, path):
        return path
    if path[:1] == ("model_info",) and _exists(data, ("model_info", "provider")):
        return ("model_info", "provider")
    while path and not _exists(data, path):
        path = path[:-1]
    return path


class Validated(NamedTuple):
    metadata: dict[str, Any]
    warnings: list[str]
    dropped: list[
        str
    ]  # labels of what was dropped: "model_info.task", "input_schema.3"


def validate_partial(metadata: Any) -> tuple[dict[str, Any], list[str]]:
    """Clean canonical metadata keeping every valid field; each dropped field becomes a
    warning naming it. Never raises."""
    result = validate_partial_detail(metadata)
    return result.metadata, result.warnings


def validate_partial_detail(metadata: Any) -> Validated:
    """validate_partial, also naming what was dropped."""
    warnings: list[str] = []
    labels: list[str] = []
    if not isinstance(metadata, dict):
        return Validated({}, ["The metadata is not an object; nothing was kept."], [])
    data = copy.deepcopy(metadata)
    root_fields = set(CanonicalMetadataSerializer().fields)
    for key in sorted(set(data) - root_fields):
        warnings.append(f"{key}: not a canonical field; ignored.")
        del data[key]
    for _ in range(12):
        try:
            return Validated(validate_metadata(data), warnings, labels)
        except serializers.ValidationError as exc:
            detail = exc.detail
            dropped: set[tuple[Any, ...]] = set()
            for path in _flatten(detail):
                target = _target(data, path)
                if not target or target in dropped:
                    continue
                if any(target[: len(d)] == d for d in dropped):
                    continue
                warnings.append(
                    f"{_label(target)}: dropped ({_error_at(detail, path)})"
                )
                labels.append(_label(target))
                _mark(data, target)
                dropped.add(target)
            if not dropped:
                break
            data = _purge(data)
    warnings.append("The metadata could not be validated; nothing was kept.")
    return Validated({}, warnings, [*labels, *field_paths(data)])


def path_of(label: str) -> str:
    """The field path a dropped label belongs to: "input_schema.3" -> "input_schema"."""
    parts = label.split(".")
    if parts[0] in SECTIONS and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]
