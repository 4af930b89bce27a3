"""Transformation writes: run the engines on one input or a batch, record each run,
accept or reject it, score a version's metadata and complete it with an LLM."""

from __future__ import annotations

import contextvars
import copy
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework import serializers

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, ConflictError, NotFoundError
from apps.providers.errors import ProviderError
from apps.providers.models import ProviderConfig
from apps.registry.metadata import validate_metadata
from apps.registry.models import ModelVersion, Transformation
from apps.registry.services import model_import, version_get, version_update_metadata
from apps.registry.transform.canonical import (
    SECTIONS,
    get_path,
    known_paths,
    overall_confidence,
    set_path,
)
from apps.registry.transform.detect import (
    Detection,
    ParsedInput,
    detect_format,
    parse_payload,
    unwrap,
)
from apps.registry.transform.llm import LLM_KINDS, LLMResult, llm_enhance, llm_transform
from apps.registry.transform.mappers import Mapping, map_payload
from apps.registry.transform.quality import expand_paths, quality_of

logger = logging.getLogger(__name__)

ENGINES = ("auto", "deterministic", "llm")
LLM_CONCURRENCY = 4


def review_threshold() -> float:
    return float(getattr(settings, "TRANSFORM_REVIEW_THRESHOLD", 0.7))


def max_input_bytes() -> int:
    return int(getattr(settings, "TRANSFORM_MAX_INPUT_BYTES", 512 * 1024))


def stored_input_bytes() -> int:
    return int(getattr(settings, "TRANSFORM_STORED_INPUT_BYTES", 64 * 1024))


@dataclass
class TransformResult:
    format: str
    engine: str
    metadata: dict[str, Any]
    field_confidence: dict[str, float]
    overall_confidence: float
    warnings: list[str]
    suggestions: list[str]
    needs_review: bool
    format_confidence: float = 0.0
    syntax: str = ""
    message: str = ""
    transformation_id: int | None = None
    status: str = ""
    target_version_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Prepared:
    parsed: ParsedInput
    detection: Detection
    data: Any
    mapping: Mapping
    use_llm: bool
    engine: str
    notes: list[str] = field(default_factory=list)


# --- helpers -------------------------------------------------------------------------


def _clean_text(value: str) -> str:
    """PostgreSQL refuses NUL and lone surrogates in text and JSON."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def storable(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _size(payload: Any) -> int:
    if isinstance(payload, str):
        return len(payload.encode("utf-8", "replace"))
    try:
        return len(json.dumps(payload, default=str).encode("utf-8", "replace"))
    except (TypeError, ValueError, RecursionError):
        return max_input_bytes() + 1


def _stored_input(payload: Any) -> tuple[Any, bool]:
    cap = stored_input_bytes()
    if _size(payload) <= cap:
        return storable(payload), False
    text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    return {"preview": storable(text[:cap])}, True


def _check_engine(engine: str, provider: ProviderConfig | None) -> None:
    if engine not in ENGINES:
        raise ApplicationError(
            f"Unknown engine '{engine}'.",
            code="invalid",
            fields={"engine": [f"One of {', '.join(ENGINES)}."]},
        )
    if engine == "llm" and provider is None:
        raise ApplicationError(
            "The LLM engine needs a provider.",
            code="invalid",
            fields={"provider_id": ["Required with engine 'llm'."]},
        )
    if provider is not None and provider.kind not in LLM_KINDS:
        raise ApplicationError(
            f"Provider '{provider.name}' ({provider.kind}) cannot answer in JSON.",
            code="invalid",
            fields={
                "provider_id": [f"Choose a provider of kind {', '.join(LLM_KINDS)}."]
            },
        )


def _check_size(payload: Any, index: int | None = None) -> None:
    limit = max_input_bytes()
    if _size(payload) > limit:
        name = "payload" if index is None else f"items.{index}.payload"
        raise ApplicationError(
            f"The payload is larger than {limit} bytes.",
            code="too_large",
            fields={name: [f"At most {limit} bytes."]},
            status_code=413,
        )


def merge_metadata(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`, field by field inside sections."""
    merged = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in overlay.items():
        if key in SECTIONS and isinstance(value, dict):
            section = merged.get(key)
            merged[key] = {**(section if isinstance(section, dict) else {}), **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _apply(version: ModelVersion, metadata: dict[str, Any], actor: Any) -> ModelVersion:
    """Merge `metadata` into the version's, read under a row lock (no lost update)."""
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    return version_update_metadata(
        version=locked,
        metadata=merge_metadata(locked.metadata, metadata),
        actor=actor,
    )


# --- the pipeline ------------------------------------------------------------------


def _prepare(payload: Any, engine: str, provider: ProviderConfig | None) -> _Prepared:
    """Parse, detect and map deterministically; decide whether the LLM is asked."""
    parsed = parse_payload(payload)
    data, note = unwrap(parsed.data)
    notes = list(parsed.warnings) + ([note] if note else [])
    detection = detect_format(data, syntax=parsed.syntax)
    mapping = map_payload(detection.format, data, body=parsed.body)
    if engine == "llm":
        use_llm = True
    elif engine == "auto" and provider is not None:
        weak = overall_confidence(mapping.confidence) < review_threshold()
        use_llm = detection.format == "unknown" or weak
    else:
        use_llm = False
    if detection.format == "unknown" and not use_llm and isinstance(data, list):
        notes.append("A list of models: send each one (POST transform/batch/).")
    return _Prepared(parsed, detection, data, mapping, use_llm, engine, notes)


def _finish(prep: _Prepared, llm: LLMResult | None) -> TransformResult:
    mapping = prep.mapping
    fmt = prep.detection.format
    warnings = list(prep.notes)
    suggestions = list(mapping.suggestions)
    engine = "deterministic"
    metadata, confidence = mapping.metadata, mapping.confidence
    message = ""
    if llm is not None and llm.ok:
        engine = "llm"
        metadata, confidence = llm.metadata, llm.confidence
        warnings += [w for w in mapping.warnings if w not in llm.warnings]
        warnings += llm.warnings
    elif llm is not None:
        second_opinion = prep.engine == "auto" and bool(mapping.metadata)
        if second_opinion:
            warnings += mapping.warnings
            warnings.append(f"The LLM second opinion was not used: {llm.message}")
        else:
            engine = "llm"
            metadata, confidence = {}, {}
            warnings += llm.warnings
            message = llm.message
            if mapping.metadata:
                suggestions.append(
                    f"The rules mapped {len(mapping.confidence)} fields from this "
                    f"{fmt}: run it with engine=deterministic."
                )
    else:
        warnings += mapping.warnings
        if fmt == "unknown" and prep.engine == "auto":
            suggestions.append(
                "Pass provider_id to let an LLM read this format (engine=auto asks "
                "it for unknown formats)."
            )
    overall = (
        0.0
        if llm is not None and not llm.ok and engine == "llm"
        else (overall_confidence(confidence))
    )
    if not message:
        kept = sum(1 for c in confidence.values() if c > 0)
        message = (
            f"Detected {fmt}: {kept} fields, overall confidence {overall:.0%}."
            if kept
            else f"Detected {fmt}: no field could be mapped."
        )
    # Input text may carry NUL or lone surrogates: neither PostgreSQL nor UTF-8
    # responses take them.
    return TransformResult(
        format=fmt,
        engine=engine,
        metadata=storable(metadata),
        field_confidence=storable(confidence),
        overall_confidence=overall,
        warnings=storable(_unique(warnings)),
        suggestions=storable(_unique(suggestions)),
        needs_review=overall < review_threshold(),
        format_confidence=prep.detection.confidence,
        syntax=prep.parsed.syntax,
        message=storable(message[:500]),
    )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def transform_compute(
    *, payload: Any, engine: str = "auto", provider: ProviderConfig | None = None
) -> TransformResult:
    """The transformation without recording it. Raises ProviderError when the
    provider fails, ApplicationError for a bad engine/provider/size."""
    _check_engine(engine, provider)
    _check_size(payload)
    prep = _prepare(payload, engine, provider)
    llm = None
    if prep.use_llm and provider is not None:
        llm = llm_transform(
            provider=provider,
            data=prep.data,
            fmt=prep.detection.format,
            deterministic=prep.mapping,
        )
    return _finish(prep, llm)


def _record(
    *,
    result: TransformResult,
    payload: Any,
    provider: ProviderConfig | None,
    actor: Any,
    target_version: ModelVersion | None,
) -> Transformation:
    stored, truncated = _stored_input(payload)
    status = (
        Transformation.Status.PENDING_REVIEW
        if result.needs_review
        else Transformation.Status.AUTO_ACCEPTED
    )
    row = Transformation.objects.create(
        input=stored,
        input_truncated=truncated,
        detected_format=result.format,
        engine=result.engine,
        provider=provider if result.engine == "llm" else None,
        result=storable(result.metadata),
        field_confidence=storable(result.field_confidence),
        overall_confidence=result.overall_confidence,
        needs_review=result.needs_review,
        warnings=storable(result.warnings),
        suggestions=storable(result.suggestions),
        message=storable(result.message),
        status=status,
        target_version=target_version,
        created_by=str(actor or "")[:254],
    )
    if status == Transformation.Status.AUTO_ACCEPTED:
        row.accepted_metadata = row.result
        if target_version is not None and result.metadata:
            try:
                with transaction.atomic():
                    _apply(target_version, result.metadata, actor)
            except ApplicationError as exc:
                row.status = Transformation.Status.PENDING_REVIEW
                row.accepted_metadata = None
                row.warnings = [
                    *row.warnings,
                    f"Not applied to version {target_version.pk}: {exc.message}",
                ]
                result.warnings = row.warnings
        row.save(update_fields=["status", "accepted_metadata", "warnings"])
    result.transformation_id = row.pk
    result.status = row.status
    result.target_version_id = target_version.pk if target_version else None
    return row


def transform_metadata(
    *,
    payload: Any,
    engine: str = "auto",
    provider: ProviderConfig | None = None,
    actor: Any,
    target_version: ModelVersion | None = None,
) -> TransformResult:
    """Transform one input and record it. Confident results are auto-accepted (and
    applied to `target_version` when given); the rest wait for review."""
    assert_tenant_schema()
    # The provider call stays outside the transaction: it may take a while.
    result = transform_compute(payload=payload, engine=engine, provider=provider)
    with transaction.atomic():
        _record(
            result=result,
            payload=payload,
            provider=provider,
            actor=actor,
            target_version=target_version,
        )
    return result


def _llm_in_tenant(
    schema: str, provider: ProviderConfig, prep: _Prepared
) -> LLMResult | ProviderError:
    """One LLM call on a worker thread: in the tenant's schema, its own connection,
    closed at the end."""
    try:
        with schema_context(schema):
            return llm_transform(
                provider=provider,
                data=prep.data,
                fmt=prep.detection.format,
                deterministic=prep.mapping,
            )
    except ProviderError as exc:
        return exc
    finally:
        connection.close()


def transform_batch(
    *,
    items: list[dict[str, Any]],
    engine: str = "auto",
    provider: ProviderConfig | None = None,
    actor: Any,
) -> dict[str, Any]:
    """Transform many inputs; each item succeeds or fails on its own. LLM calls run
    on at most four threads, the recording on this one."""
    schema = assert_tenant_schema()
    _check_engine(engine, provider)
    outcomes: list[dict[str, Any]] = [{} for _ in items]
    prepared: dict[int, tuple[_Prepared, ModelVersion | None]] = {}
    for index, item in enumerate(items):
        try:
            _check_size(item.get("payload"), index)
            target = None
            if item.get("version_id") is not None:
                target = version_get(pk=int(item["version_id"]))
            prepared[index] = (_prepare(item.get("payload"), engine, provider), target)
        except ApplicationError as exc:
            outcomes[index] = _failure(index, exc)

    asks = [i for i, (prep, _) in prepared.items() if prep.use_llm]
    answers: dict[int, LLMResult | ProviderError] = {}
    if asks and provider is not None:
        workers = min(
            int(getattr(settings, "TRANSFORM_LLM_CONCURRENCY", LLM_CONCURRENCY)),
            LLM_CONCURRENCY,
            len(asks),
        )
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {
                i: pool.submit(
                    contextvars.copy_context().run,
                    _llm_in_tenant,
                    schema,
                    provider,
                    prepared[i][0],
                )
                for i in asks
            }
            answers = {i: f.result() for i, f in futures.items()}

    for index, (prep, target) in sorted(prepared.items()):
        answer = answers.get(index)
        if isinstance(answer, ProviderError):
            outcomes[index] = _failure(index, answer)
            continue
        try:
            with transaction.atomic():
                result = _finish(prep, answer)
                _record(
                    result=result,
                    payload=items[index].get("payload"),
                    provider=provider,
                    actor=actor,
                    target_version=target,
                )
        except ApplicationError as exc:
            outcomes[index] = _failure(index, exc)
            continue
        outcomes[index] = {"index": index, "ok": True, "result": result.as_dict()}
    ok = [o for o in outcomes if o.get("ok")]
    return {
        "summary": {
            "total": len(items),
            "ok": len(ok),
            "failed": len(items) - len(ok),
            "needs_review": sum(1 for o in ok if o["result"]["needs_review"]),
        },
        "results": outcomes,
    }


def _failure(index: int, exc: ApplicationError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.fields:
        error["fields"] = exc.fields
    return {"index": index, "ok": False, "error": error}


# --- review --------------------------------------------------------------------------


def _locked(transformation: Transformation) -> Transformation:
    return Transformation.objects.select_for_update().get(pk=transformation.pk)


def _open_for_review(row: Transformation) -> None:
    applied = (
        row.status == Transformation.Status.AUTO_ACCEPTED
        and row.target_version_id is not None
    )
    if row.status in (Transformation.Status.ACCEPTED, Transformation.Status.REJECTED):
        raise ConflictError(f"Transformation {row.pk} is already {row.status}.")
    if applied:
        raise ConflictError(
            f"Transformation {row.pk} was applied to version {row.target_version_id} "
            "automatically; edit the version instead."
        )


def provider_for_registration(
    metadata: dict[str, Any], provider: ProviderConfig | None
) -> ProviderConfig | None:
    """The provider a model+version can be registered under: the one given, or the
    only enabled provider of the metadata's provider kind."""
    info = metadata.get("model_info") or {}
    kind = info.get("provider")
    if provider is not None:
        if kind and kind != provider.kind:
            raise ApplicationError(
                f"The metadata names provider kind '{kind}', not '{provider.kind}'.",
                code="invalid",
                fields={"provider_id": [f"Choose a provider of kind '{kind}'."]},
            )
        return provider
    if kind not in ProviderConfig.Kind.values:
        return None
    candidates = list(ProviderConfig.objects.filter(kind=kind, enabled=True)[:2])
    return candidates[0] if len(candidates) == 1 else None


@transaction.atomic
def transformation_accept(
    *,
    transformation: Transformation,
    actor: Any,
    metadata: dict[str, Any] | None = None,
    target_version: ModelVersion | None = None,
    provider: ProviderConfig | None = None,
    model_name: str = "",
) -> tuple[Transformation, ModelVersion | None]:
    """Accept (possibly edited) metadata: applied to the target version; or, for a
    provider's model whose provider is known, registered as a model+version; or
    else kept as accepted metadata with no version."""
    assert_tenant_schema()
    row = _locked(transformation)
    _open_for_review(row)
    try:
        final = validate_metadata(row.result if metadata is None else metadata)
    except serializers.ValidationError as exc:
        raise ApplicationError(
            "The metadata is not valid.",
            code="invalid",
            fields={"metadata": [str(exc.detail)]},
        ) from exc
    target = target_version or row.target_version
    version: ModelVersion | None = None
    if target is not None:
        version = _apply(target, final, actor)
    else:
        chosen = provider_for_registration(final, provider)
        external_id = (final.get("model_info") or {}).get("external_id", "")
        if chosen is not None and provider is not None and not external_id:
            raise ApplicationError(
                "Registering under a provider needs the model's external id.",
                code="invalid",
                fields={"metadata.model_info.external_id": ["Required."]},
            )
        if chosen is not None and external_id:
            imported = model_import(
                provider=chosen,
                external_id=external_id,
                metadata=final,
                model_name=model_name,
                actor=actor,
            )
            version = ModelVersion.objects.get(pk=int(imported.version_id or 0))
    row.status = Transformation.Status.ACCEPTED
    row.accepted_metadata = final
    row.target_version = version
    row.reviewed_by = str(actor or "")[:254]
    row.reviewed_at = timezone.now()
    row.save()
    audit_record(
        actor=actor,
        action="transformation.accept",
        obj=row,
        after={
            "version": version.pk if version else None,
            "edited": metadata is not None,
        },
    )
    return row, version


@transaction.atomic
def transformation_hold(
    *, transformation: Transformation, actor: Any
) -> Transformation:
    """Keep a result for a person to review later, even a confident one."""
    assert_tenant_schema()
    row = _locked(transformation)
    _open_for_review(row)
    if row.status != Transformation.Status.PENDING_REVIEW:
        row.status = Transformation.Status.PENDING_REVIEW
        row.accepted_metadata = None
        row.save(update_fields=["status", "accepted_metadata"])
    return row


@transaction.atomic
def transformation_reject(
    *, transformation: Transformation, actor: Any, reason: str = ""
) -> Transformation:
    assert_tenant_schema()
    row = _locked(transformation)
    _open_for_review(row)
    row.status = Transformation.Status.REJECTED
    row.reviewed_by = str(actor or "")[:254]
    row.reviewed_at = timezone.now()
    row.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    audit_record(
        actor=actor,
        action="transformation.reject",
        obj=row,
        after={"reason": storable(reason[:500])},
    )
    return row


# --- quality and enhancement -------------------------------------------------------


def metadata_quality(version: ModelVersion) -> dict[str, Any]:
    """{score 0..100, missing, present, recommendations, checks} of a version."""
    extra = {
        "input_schema": version.input_schema,
        "output_schema": version.output_schema,
        "performance": version.metrics,
    }
    metadata = version.metadata if isinstance(version.metadata, dict) else {}
    report = quality_of(metadata, extra=extra, source=version.source)
    return {"version_id": version.pk, **report}


def enhance(version: ModelVersion, provider: ProviderConfig) -> dict[str, Any]:
    """LLM proposals for the fields the quality check misses; nothing is stored."""
    _check_engine("llm", provider)
    quality = metadata_quality(version)
    missing = expand_paths(quality["missing"])
    base = {"version_id": version.pk, "missing": quality["missing"]}
    if not missing:
        return {
            **base,
            "ok": True,
            "proposals": [],
            "warnings": [],
            "message": "Nothing is missing.",
        }
    answer = llm_enhance(
        provider=provider,
        metadata=version.metadata if isinstance(version.metadata, dict) else {},
        missing=missing,
        model_name=f"{version.model.name} v{version.number}",
    )
    proposals = []
    for path, confidence in answer.confidence.items():
        value = get_path(answer.metadata, path)
        if value is not None:
            proposals.append({"field": path, "value": value, "confidence": confidence})
    return {
        **base,
        "ok": answer.ok,
        "proposals": proposals,
        "warnings": answer.warnings,
        "message": answer.message
        or f"{len(proposals)} proposals for {len(missing)} missing fields.",
    }


def enhance_apply(
    *, version: ModelVersion, accepted_fields: dict[str, Any], actor: Any
) -> ModelVersion:
    """Write the accepted proposals ({field path: value}) into the version."""
    unknown = sorted(set(accepted_fields) - set(known_paths()))
    if unknown:
        raise ApplicationError(
            "Unknown metadata fields.",
            code="invalid",
            fields={f"fields.{p}": ["Not a canonical field path."] for p in unknown},
        )
    if not accepted_fields:
        raise ApplicationError(
            "No field to apply.", code="invalid", fields={"fields": ["Empty."]}
        )
    merged = copy.deepcopy(
        version.metadata if isinstance(version.metadata, dict) else {}
    )
    for path, value in accepted_fields.items():
        set_path(merged, path, value)
    return version_update_metadata(version=version, metadata=merged, actor=actor)


def transformation_get(*, pk: int) -> Transformation:
    try:
        return Transformation.objects.select_related("target_version").get(pk=pk)
    except Transformation.DoesNotExist as exc:
        raise NotFoundError(f"No transformation {pk}.") from exc


def provider_get(*, pk: int) -> ProviderConfig:
    try:
        return ProviderConfig.objects.get(pk=pk)
    except ProviderConfig.DoesNotExist as exc:
        raise ApplicationError(
            f"No provider {pk}.",
            code="invalid",
            fields={"provider_id": [f"No provider {pk} in this organisation."]},
        ) from exc
