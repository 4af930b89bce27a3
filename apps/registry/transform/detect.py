"""Parse what a person pasted (JSON, YAML, a model card, or an already-parsed value)
and tell which public metadata format it is, without being told. Pure: no ORM."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import yaml

FORMATS: dict[str, str] = {
    "huggingface_config": "HuggingFace transformers config.json",
    "huggingface_model_card": "HuggingFace model card (YAML front matter of README.md)",
    "openai_model": "OpenAI model object (GET /v1/models/{id})",
    "anthropic_model": "Anthropic model object (GET /v1/models/{id})",
    "google_model": "Google Gemini model object (models/...)",
    "mlflow_mlmodel": "MLflow MLmodel file (YAML: flavors, signature)",
    "oip_model_metadata": "Open Inference Protocol v2 model metadata (GET /v2/models/{name})",
    "canonical": "ModelHub canonical metadata",
    "unknown": "Not recognised",
}
CANONICAL_KEYS = {
    "model_info",
    "training",
    "performance",
    "input_schema",
    "output_schema",
    "pricing",
    "license",
    "feature_importance",
    "description",
}
CANONICAL_SECTIONS = CANONICAL_KEYS - {"license", "description"}
HF_CONFIG_KEYS = {
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
    "n_positions",
    "n_ctx",
    "n_embd",
    "n_layer",
    "n_head",
    "intermediate_size",
    "torch_dtype",
    "transformers_version",
    "hidden_act",
    "initializer_range",
    "layer_norm_eps",
    "rms_norm_eps",
    "id2label",
    "image_size",
    "patch_size",
    "num_channels",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
    "rope_theta",
    "num_key_value_heads",
    "text_config",
    "vision_config",
}
CARD_KEYS = {
    "license",
    "license_name",
    "license_link",
    "pipeline_tag",
    "tags",
    "datasets",
    "base_model",
    "language",
    "model-index",
    "library_name",
    "metrics",
    "widget",
    "inference",
    "thumbnail",
    "co2_eq_emissions",
    "extra_gated_prompt",
    "new_version",
}
GOOGLE_KEYS = {
    "displayName",
    "display_name",
    "inputTokenLimit",
    "input_token_limit",
    "outputTokenLimit",
    "output_token_limit",
    "supportedGenerationMethods",
    "supported_actions",
    "baseModelId",
    "version",
    "thinking",
}
MLFLOW_KEYS = {
    "signature",
    "run_id",
    "utc_time_created",
    "model_uuid",
    "mlflow_version",
    "artifact_path",
    "saved_input_example_info",
}
# Below this score a format is not claimed: the input is "unknown".
MIN_SCORE = 0.5
MAX_DEPTH = 64
MAX_TEXT = 2_000_000


@dataclass(frozen=True)
class ParsedInput:
    """The input as JSON values. `syntax`: object | json | yaml | model_card | text."""

    data: Any
    syntax: str
    body: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Detection:
    format: str
    confidence: float
    reasons: list[str] = field(default_factory=list)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors/aliases: a few lines of aliases can expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not accepted", event.start_mark
            )
        return super().compose_node(parent, index)


def to_json_value(value: Any, _depth: int = 0) -> Any:
    """Any parsed value as plain JSON types: string keys, ISO dates, no NaN, bounded
    depth (deeper levels become null)."""
    if _depth > MAX_DEPTH:
        return None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_json_value(v, _depth + 1) for v in items]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _depth_of(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    stack: list[tuple[Any, int]] = [(value, 0)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest >= limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


_FRONT_MATTER = re.compile(
    r"\A\s*---[ \t]*\r?\n(?P<yaml>.*?)(?:\r?\n)(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)(?P<body>.*)\Z",
    re.DOTALL,
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def parse_payload(payload: Any) -> ParsedInput:
    """Never raises: text nobody can parse comes back as syntax "text"."""
    warnings: list[str] = []
    if not isinstance(payload, str):
        data = to_json_value(payload)
        if _depth_of(payload) > MAX_DEPTH:
            warnings.append(f"Nesting deeper than {MAX_DEPTH} levels was cut.")
        return ParsedInput(data, "object", warnings=tuple(warnings))
    text = payload.lstrip("\ufeff")
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
        warnings.append(f"Only the first {MAX_TEXT} characters were read.")
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            header = _load_yaml(match.group("yaml"))
        except (yaml.YAMLError, RecursionError, ValueError) as exc:
            warnings.append(f"The front matter is not valid YAML: {_short(exc)}")
        else:
            if isinstance(header, dict):
                return ParsedInput(
                    to_json_value(header),
                    "model_card",
                    body=match.group("body"),
                    warnings=tuple(warnings),
                )
    try:
        return ParsedInput(
            to_json_value(json.loads(text)), "json", warnings=tuple(warnings)
        )
    except (ValueError, RecursionError):
        pass
    try:
        loaded = _load_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        warnings.append(f"Neither JSON nor YAML: {_short(exc)}")
        return ParsedInput(text, "text", warnings=tuple(warnings))
    if isinstance(loaded, (dict, list)):
        return ParsedInput(to_json_value(loaded), "yaml", warnings=tuple(warnings))
    return ParsedInput(text, "text", warnings=tuple(warnings))


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


# --- format signatures ---------------------------------------------------------------


def _score_canonical(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    keys = set(d)
    sections = keys & CANONICAL_SECTIONS
    if not sections or not all(isinstance(d[k], (dict, list)) for k in sections):
        return 0.0, ""
    if keys <= CANONICAL_KEYS:
        return 1.0, f"only canonical keys ({', '.join(sorted(keys))})"
    if len(keys & CANONICAL_KEYS) >= 2:
        return 0.6, "mostly canonical keys"
    return 0.0, ""


def _score_openai(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    if d.get("object") == "model" and isinstance(d.get("id"), str):
        score = 1.0 if "owned_by" in d else 0.8
        return score, 'object is "model" with an id'
    return 0.0, ""


def _score_anthropic(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    if d.get("type") == "model" and isinstance(d.get("id"), str):
        score = 1.0 if ("display_name" in d or "created_at" in d) else 0.8
        return score, 'type is "model" with an id'
    return 0.0, ""


def _score_google(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    name = d.get("name")
    if not isinstance(name, str) or not name.startswith(("models/", "tunedModels/")):
        return 0.0, ""
    hits = len(GOOGLE_KEYS & set(d))
    return min(1.0, 0.5 + 0.25 * hits), f"name '{name[:60]}' and {hits} Gemini keys"


def _score_mlflow(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    if not isinstance(d.get("flavors"), dict):
        return 0.0, ""
    hits = len(MLFLOW_KEYS & set(d))
    return (1.0 if hits else 0.8), f"flavors and {hits} MLmodel keys"


def _is_tensor_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and "datatype" in t for t in value)
    )


def _score_oip(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    inputs, outputs = d.get("inputs"), d.get("outputs")
    if not (_is_tensor_list(inputs) or _is_tensor_list(outputs)):
        return 0.0, ""
    score = 0.7 + 0.15 * isinstance(d.get("name"), str)
    score += 0.15 * ("platform" in d or "versions" in d)
    return min(1.0, score), "inputs/outputs are tensors with datatype"


def _score_hf_config(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    hits = len(HF_CONFIG_KEYS & set(d))
    if "model_type" in d or "architectures" in d or "transformers_version" in d:
        return min(1.0, 0.6 + 0.1 * hits), f"{hits} transformers config keys"
    if hits >= 3:
        return 0.5, f"{hits} transformers config keys"
    return 0.0, ""


def _score_card(d: dict[str, Any], syntax: str) -> tuple[float, str]:
    hits = len(CARD_KEYS & set(d))
    if not hits:
        return 0.0, ""
    strong = "model-index" in d or "pipeline_tag" in d
    score = 0.25 * hits + (0.4 if syntax == "model_card" else 0.0)
    score += 0.25 if strong else 0.0
    return min(1.0, score), f"{hits} model card keys" + (
        " in a front matter" if syntax == "model_card" else ""
    )


_SIGNATURES: list[tuple[str, Callable[[dict[str, Any], str], tuple[float, str]]]] = [
    ("canonical", _score_canonical),
    ("openai_model", _score_openai),
    ("anthropic_model", _score_anthropic),
    ("google_model", _score_google),
    ("mlflow_mlmodel", _score_mlflow),
    ("oip_model_metadata", _score_oip),
    ("huggingface_config", _score_hf_config),
    ("huggingface_model_card", _score_card),
]


def unwrap(data: Any) -> tuple[Any, str]:
    """A one-item list, or list envelope ({"object": "list", "data": [...]},
    {"models": [...]}), stands for its item."""
    if isinstance(data, list) and len(data) == 1:
        return data[0], "The input was a one-item list; its item was read."
    if isinstance(data, dict) and set(data) <= {"object", "data", "models", "has_more"}:
        for key in ("data", "models"):
            items = data.get(key)
            if isinstance(items, list) and len(items) == 1:
                return items[
                    0
                ], f"The input listed one model under '{key}'; it was read."
    return data, ""


def detect_format(data: Any, *, syntax: str = "object") -> Detection:
    """The most likely format of `data`, "unknown" when nothing scores MIN_SCORE."""
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "not an object"
        return Detection("unknown", 0.0, [f"the input is {kind}"])
    best = Detection("unknown", 0.0, ["no known format matched"])
    for name, signature in _SIGNATURES:
        score, reason = signature(data, syntax)
        if score > best.confidence and score >= MIN_SCORE:
            best = Detection(name, round(score, 2), [reason])
    return best
