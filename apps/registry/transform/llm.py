"""The LLM engine: a configured provider reads metadata no mapper knows (or gives a
second opinion), answering with structured output in the canonical shape and its own
confidence per field. The answer is validated like any other input; the confidence
of each field is

    model's own confidence * schema validity * agreement with the deterministic pass

validity: 1 kept, 0.5 partly dropped, 0 dropped; agreement: *1.2 (never below the
rules' own confidence) when the rules found the same value, *0.5 with a warning when
they found another one (the more confident value is kept), *1 when only the LLM
found it. Garbage answers give a result with overall confidence 0, never an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from rest_framework import serializers

from apps.providers.connectors.base import InvokeRequest, InvokeResult
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider
from apps.registry.metadata import CanonicalMetadataSerializer
from apps.registry.transform.canonical import (
    field_paths,
    get_path,
    known_paths,
    path_of,
    set_path,
    validate_partial_detail,
)
from apps.registry.transform.mappers import Mapping

# Provider kinds that speak chat and can answer in JSON.
LLM_KINDS = ("openai", "anthropic", "google")
# Kinds whose API takes OpenAI's response_format (Gemini via its OpenAI endpoint).
RESPONSE_FORMAT_KINDS = ("openai", "google")
DEFAULT_MODEL_CONFIDENCE = 0.5
PARTIAL_VALIDITY = 0.5
AGREE_BOOST = 1.2
DISAGREE_FACTOR = 0.5
MAX_INPUT_CHARS = 30_000
ANTHROPIC_MAX_TOKENS = 4096

SYSTEM_PROMPT = """You convert machine-learning model metadata into ModelHub's canonical \
metadata. Answer with one JSON object and nothing else:
{"metadata": <canonical metadata>, "confidence": {"<field path>": <0..1>}, \
"notes": [<short remarks>]}
Rules:
- Fill only fields the input supports; leave out what it does not say. Never invent \
numbers (context windows, metrics, prices).
- Use the enumerations exactly as given in the schema (architecture, task, \
modalities, capabilities, feature types).
- Field paths in "confidence" are dotted: "model_info.task", \
"model_info.context_window", "training.dataset", "performance.accuracy", \
"input_schema", "output_schema", "license", "description".
- Confidence is how sure you are the value is right: 0.9+ only when the input states \
it, 0.5 when inferred, lower when guessed.
- Metrics between 0 and 1 (accuracy, f1, auc, precision, recall) are fractions, not \
percent.
The canonical metadata schema:
"""

ENHANCE_PROMPT = """You complete ModelHub model metadata. You get the metadata a \
model version has and the list of field paths it lacks. Propose values only for the \
missing paths that you know with reasonable certainty for this exact model (public \
documentation, model cards); leave out the rest. Answer with one JSON object: \
{"metadata": <canonical metadata holding only the proposed fields>, \
"confidence": {"<field path>": <0..1>}, "notes": [...]}.
The canonical metadata schema:
"""


def _field_schema(fld: serializers.Field) -> dict[str, Any]:
    """JSON Schema of one DRF field (the subset the canonical serializers use)."""
    if isinstance(fld, serializers.ListSerializer):
        return {"type": "array", "items": _field_schema(fld.child)}
    if isinstance(fld, serializers.Serializer):
        properties = {name: _field_schema(f) for name, f in fld.fields.items()}
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        required = [name for name, f in fld.fields.items() if f.required]
        if required:
            schema["required"] = required
        return schema
    if isinstance(fld, serializers.ChoiceField):
        return {"type": "string", "enum": [str(c) for c in fld.choices]}
    if isinstance(fld, serializers.ListField):
        return {"type": "array", "items": _field_schema(fld.child)}
    if isinstance(fld, serializers.DictField):
        return {"type": "object", "additionalProperties": _field_schema(fld.child)}
    if isinstance(fld, serializers.BooleanField):
        return {"type": "boolean"}
    if isinstance(fld, serializers.IntegerField):
        return {"type": "integer"}
    if isinstance(fld, (serializers.FloatField, serializers.DecimalField)):
        return {"type": "number"}
    if isinstance(fld, serializers.DateField):
        return {"type": "string", "format": "date"}
    if isinstance(fld, serializers.RegexField):
        patterns = [v.regex.pattern for v in fld.validators if hasattr(v, "regex")]
        return {"type": "string", **({"pattern": patterns[0]} if patterns else {})}
    if isinstance(fld, serializers.CharField):
        return {"type": "string"}
    return {}


@cache
def canonical_json_schema() -> dict[str, Any]:
    """The canonical shape as JSON Schema, derived from the serializers themselves."""
    return _field_schema(CanonicalMetadataSerializer())


def response_json_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "metadata": canonical_json_schema(),
            "confidence": {
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "notes": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["metadata", "confidence"],
    }


def _parameters(provider: ProviderConfig, name: str) -> dict[str, Any]:
    if provider.kind in RESPONSE_FORMAT_KINDS:
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": name,
                    "schema": response_json_schema(),
                    "strict": False,
                },
            }
        }
    # Anthropic: the prompt asks for JSON; max_tokens is required by its API.
    return {"max_tokens": ANTHROPIC_MAX_TOKENS}


def _ask(provider: ProviderConfig, system: str, user: str, name: str) -> InvokeResult:
    """One structured-output call through resilience (ProviderError on failure)."""
    request = InvokeRequest(
        messages=[
            {
                "role": "system",
                "content": system + json.dumps(canonical_json_schema()),
            },
            {"role": "user", "content": user},
        ],
        parameters=_parameters(provider, name),
    )
    return call_provider(provider, lambda connector: connector.invoke(request))


@dataclass
class LLMResult:
    """What the LLM pass produced. `ok` False: the answer was unusable (`message`)."""

    ok: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    message: str = ""
    model: str = ""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_answer(text: Any) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
    """(metadata, raw confidence map, problem) from the model's answer text."""
    if isinstance(text, dict):
        answer: Any = text
    else:
        if not isinstance(text, str) or not text.strip():
            return None, {}, "The LLM gave an empty answer."
        stripped = text.strip()
        fenced = _FENCE.match(stripped)
        if fenced:
            stripped = fenced.group(1)
        try:
            answer = json.loads(stripped)
        except (ValueError, RecursionError):
            return None, {}, "The LLM's answer was not JSON; nothing was taken from it."
    if not isinstance(answer, dict):
        return None, {}, "The LLM's answer was JSON but not an object."
    metadata = answer.get("metadata")
    confidence = answer.get("confidence")
    if isinstance(metadata, dict):
        return metadata, confidence if isinstance(confidence, dict) else {}, ""
    roots = set(CanonicalMetadataSerializer().fields)
    if answer and set(answer) <= roots:
        return answer, {}, ""
    return (
        None,
        {},
        "The LLM's answer did not have the expected shape "
        '({"metadata": ..., "confidence": ...}); nothing was taken from it.',
    )


def _flatten_confidence(raw: Any, prefix: str = "") -> dict[str, float]:
    """{"model_info": {"task": 0.9}} or {"model_info.task": 0.9} -> dotted paths,
    clamped to 0..1; non-numbers ignored."""
    out: dict[str, float] = {}
    if not isinstance(raw, dict):
        return out
    for key, value in raw.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten_confidence(value, path))
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value == value  # not NaN
        ):
            out[path] = min(1.0, max(0.0, float(value)))
    return out


def _own_confidence(raw: dict[str, float], path: str) -> float:
    if path in raw:
        return raw[path]
    # A confidence given for a section covers its fields.
    section = path.split(".")[0]
    return raw.get(section, DEFAULT_MODEL_CONFIDENCE)


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sorted({v.strip().casefold() for v in value})
    return json.dumps(value, sort_keys=True, default=str)


def values_agree(path: str, a: Any, b: Any) -> bool:
    """Same value, as far as a person would care: case, list order and, for estimates,
    15% do not count."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        if path == "model_info.parameter_count":
            return abs(a - b) <= 0.15 * max(abs(a), abs(b))
        return float(a) == float(b)
    if path == "input_schema" and isinstance(a, list) and isinstance(b, list):

        def shape(features: list[Any]) -> set[tuple[str, str]]:
            return {
                (str(f.get("name")), str(f.get("type")))
                for f in features
                if isinstance(f, dict)
            }

        return shape(a) == shape(b)
    return bool(_norm(a) == _norm(b))


def score_answer(
    metadata: dict[str, Any],
    raw_confidence: dict[str, Any],
    deterministic: Mapping | None,
) -> LLMResult:
    """Validate the LLM's metadata and combine its confidence with validity and the
    deterministic pass (see the module docstring)."""
    own = _flatten_confidence(raw_confidence)
    checked = validate_partial_detail(metadata)
    warnings = [f"LLM answer: {w}" for w in checked.warnings]
    roots = set(CanonicalMetadataSerializer().fields)
    proposed = [p for p in field_paths(metadata) if p.split(".")[0] in roots]
    dropped_paths = {path_of(label): label for label in checked.dropped}
    llm_conf: dict[str, float] = {}
    for path in proposed:
        if path not in field_paths(checked.metadata):
            validity = 0.0
        elif path in dropped_paths:
            validity = PARTIAL_VALIDITY
        else:
            validity = 1.0
        llm_conf[path] = round(_own_confidence(own, path) * validity, 3)

    det_meta = deterministic.metadata if deterministic else {}
    det_conf = deterministic.confidence if deterministic else {}
    merged: dict[str, Any] = json.loads(json.dumps(det_meta))
    confidence: dict[str, float] = dict(det_conf)
    for path in field_paths(checked.metadata):
        value = get_path(checked.metadata, path)
        mine = llm_conf.get(path, DEFAULT_MODEL_CONFIDENCE)
        if path not in det_conf:
            set_path(merged, path, value)
            confidence[path] = mine
            continue
        theirs = det_conf[path]
        rules_value = get_path(det_meta, path)
        if values_agree(path, value, rules_value):
            confidence[path] = round(max(min(1.0, mine * AGREE_BOOST), theirs), 3)
            continue
        keep_llm = mine > theirs
        if keep_llm:
            set_path(merged, path, value)
        kept = value if keep_llm else rules_value
        confidence[path] = round((mine if keep_llm else theirs) * DISAGREE_FACTOR, 3)
        warnings.append(
            f"{path}: the LLM says {_show(value)}, the rules say {_show(rules_value)}; "
            f"kept {_show(kept)} at lower confidence — please check."
        )
    final = validate_partial_detail(merged)
    warnings += [w for w in final.warnings if w not in warnings]
    kept_paths = field_paths(final.metadata)
    result_conf = {p: confidence.get(p, DEFAULT_MODEL_CONFIDENCE) for p in kept_paths}
    for path, score in llm_conf.items():
        if score == 0.0 and path not in result_conf:
            result_conf[path] = 0.0  # shown as dropped: it weighs on the overall
    return LLMResult(True, final.metadata, result_conf, warnings)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _input_text(data: Any) -> tuple[str, list[str]]:
    text = data if isinstance(data, str) else json.dumps(data, indent=1, default=str)
    if len(text) > MAX_INPUT_CHARS:
        return text[:MAX_INPUT_CHARS], [
            f"Only the first {MAX_INPUT_CHARS} characters were sent to the LLM."
        ]
    return text, []


def llm_transform(
    *,
    provider: ProviderConfig,
    data: Any,
    fmt: str,
    deterministic: Mapping | None = None,
) -> LLMResult:
    """Ask the provider for canonical metadata of `data`. Raises ProviderError when
    the provider fails; an unusable answer is an LLMResult with ok=False."""
    text, warnings = _input_text(data)
    hint = "" if fmt == "unknown" else f" (it looks like {fmt})"
    user = f"Convert this model metadata{hint}:\n\n{text}"
    answer = _ask(provider, SYSTEM_PROMPT, user, "canonical_metadata")
    metadata, raw_confidence, problem = parse_answer(answer.output)
    if metadata is None:
        return LLMResult(False, warnings=warnings, message=problem, model=answer.model)
    result = score_answer(metadata, raw_confidence, deterministic)
    result.warnings = warnings + result.warnings
    result.model = answer.model
    return result


def llm_enhance(
    *,
    provider: ProviderConfig,
    metadata: dict[str, Any],
    missing: list[str],
    model_name: str,
) -> LLMResult:
    """Proposals for the `missing` field paths only; nothing else is taken."""
    user = (
        f"Model: {model_name}\nIts metadata:\n{json.dumps(metadata, indent=1)}\n\n"
        f"Missing field paths: {', '.join(missing)}"
    )
    answer = _ask(provider, ENHANCE_PROMPT, user, "metadata_proposals")
    proposed, raw_confidence, problem = parse_answer(answer.output)
    if proposed is None:
        return LLMResult(False, message=problem, model=answer.model)
    allowed = set(missing) & set(known_paths())
    only: dict[str, Any] = {}
    ignored = []
    for path in field_paths(proposed):
        if path in allowed:
            set_path(only, path, get_path(proposed, path))
        else:
            ignored.append(path)
    result = score_answer(only, raw_confidence, None)
    if ignored:
        result.warnings.append(
            f"Ignored proposals for fields that are not missing: {', '.join(ignored)}."
        )
    result.model = answer.model
    return result
