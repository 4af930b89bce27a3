"""Registry writes: models, versions (numbered per model), status, provider imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify
from rest_framework import serializers

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, ConflictError, NotFoundError
from apps.providers.connectors.base import DiscoveredModel
from apps.providers.models import ProviderConfig
from apps.registry.metadata import validate_metadata
from apps.registry.models import ModelVersion, RegisteredModel

# Words under /api/v1/models/ and /models/ that a model slug must never take.
RESERVED_SLUGS = {"upload", "transform", "import", "versions", "new", "batch"}


def _unique_slug(name: str) -> str:
    base = slugify(name)[:180] or "model"
    if base in RESERVED_SLUGS:
        base = f"{base}-model"
    slug, n = base, 2
    while RegisteredModel.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _metadata_or_error(metadata: Any) -> dict[str, Any]:
    try:
        return validate_metadata(metadata or {})
    except serializers.ValidationError as exc:
        raise ApplicationError(
            "The metadata is not valid.",
            code="invalid",
            fields={"metadata": [str(exc.detail)]},
        ) from exc


@transaction.atomic
def model_create(
    *,
    name: str,
    actor: Any,
    description: str = "",
    task_type: str = "other",
    tags: list[str] | None = None,
    owner: Any = None,
) -> RegisteredModel:
    assert_tenant_schema()
    if RegisteredModel.objects.filter(name=name).exists():
        raise ConflictError(
            f"A model named '{name}' exists.", fields={"name": ["taken"]}
        )
    model = RegisteredModel.objects.create(
        name=name,
        slug=_unique_slug(name),
        description=description,
        task_type=task_type,
        tags=tags or [],
        owner=owner if getattr(owner, "pk", None) else None,
    )
    audit_record(
        actor=actor,
        action="model.create",
        obj=model,
        after={"name": name, "task_type": task_type},
    )
    return model


@transaction.atomic
def model_update(
    *, model: RegisteredModel, actor: Any, **fields: Any
) -> RegisteredModel:
    assert_tenant_schema()
    model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    if (
        "name" in fields
        and RegisteredModel.objects.filter(name=fields["name"])
        .exclude(pk=model.pk)
        .exists()
    ):
        raise ConflictError(
            f"A model named '{fields['name']}' exists.", fields={"name": ["taken"]}
        )
    before = {k: getattr(model, k) for k in fields}
    for key, value in fields.items():
        setattr(model, key, value)
    model.save()
    audit_record(
        actor=actor, action="model.update", obj=model, before=before, after=fields
    )
    return model


@transaction.atomic
def version_create(
    *,
    model: RegisteredModel,
    source: str,
    actor: Any,
    metadata: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    input_schema: list[dict[str, Any]] | None = None,
    output_schema: dict[str, Any] | None = None,
    provider: ProviderConfig | None = None,
    external_id: str = "",
    lineage: dict[str, Any] | None = None,
    parent: ModelVersion | None = None,
    status: str = ModelVersion.Status.DRAFT,
) -> ModelVersion:
    """Next number for the model (the model row is locked while numbering)."""
    assert_tenant_schema()
    clean = _metadata_or_error(metadata)
    RegisteredModel.objects.select_for_update().get(pk=model.pk)
    number = (model.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                model=model,
                number=number,
                source=source,
                status=status,
                metadata=clean,
                metrics=metrics or clean.get("performance", {}),
                input_schema=input_schema or clean.get("input_schema", []),
                output_schema=output_schema or clean.get("output_schema", {}),
                provider=provider,
                external_id=external_id,
                lineage=lineage or {},
                parent=parent,
                created_by=str(actor or "")[:254],
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"'{external_id}' from this provider is already registered.",
            fields={"external_id": ["already registered"]},
        ) from exc
    audit_record(
        actor=actor,
        action="version.create",
        obj=version,
        after={
            "model": model.name,
            "number": number,
            "source": source,
            "external_id": external_id,
            "status": status,
        },
    )
    return version


@transaction.atomic
def version_set_status(
    *, version: ModelVersion, status: str, actor: Any
) -> ModelVersion:
    assert_tenant_schema()
    if status not in ModelVersion.Status.values:
        raise ApplicationError(
            f"Unknown status '{status}'.",
            code="invalid",
            fields={"status": [f"one of {ModelVersion.Status.values}"]},
        )
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    before = version.status
    if before != status:
        version.status = status
        version.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=actor,
            action="version.status",
            obj=version,
            before={"status": before},
            after={"status": status},
        )
    return version


@transaction.atomic
def version_update_metadata(
    *, version: ModelVersion, metadata: dict[str, Any], actor: Any
) -> ModelVersion:
    assert_tenant_schema()
    clean = _metadata_or_error(metadata)
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    before = version.metadata
    version.metadata = clean
    if clean.get("input_schema"):
        version.input_schema = clean["input_schema"]
    if clean.get("output_schema"):
        version.output_schema = clean["output_schema"]
    if clean.get("performance"):
        version.metrics = {**version.metrics, **clean["performance"]}
    version.save()
    audit_record(
        actor=actor, action="version.metadata", obj=version, before=before, after=clean
    )
    return version


# --- import from providers ---------------------------------------------------------


def metadata_from_discovery(
    provider: ProviderConfig, found: DiscoveredModel
) -> dict[str, Any]:
    """Canonical metadata from a provider's catalogue entry (deterministic)."""
    capabilities = [c for c in found.capabilities if c]
    task = (
        "chat"
        if "chat" in capabilities
        else ("embedding" if "embedding" in capabilities else None)
    )
    if provider.kind == "huggingface":
        task = found.raw.get("pipeline_tag") or task
    info: dict[str, Any] = {
        "provider": provider.kind,
        "external_id": found.id,
        "name": found.name or found.id,
        "capabilities": capabilities,
    }
    if provider.kind in ("openai", "anthropic", "google"):
        info["architecture"] = "transformer"
        info["modalities"] = ["text"] + (["image"] if "vision" in capabilities else [])
    if provider.kind == "huggingface":
        info["repo_id"] = found.id
    if task:
        info["task"] = task
    if found.context_window:
        info["context_window"] = found.context_window
    if found.max_output_tokens:
        info["max_output_tokens"] = found.max_output_tokens
    metadata: dict[str, Any] = {"model_info": info}
    if provider.price_per_1k_input or provider.price_per_1k_output:
        metadata["pricing"] = {
            "input_per_1k": float(provider.price_per_1k_input),
            "output_per_1k": float(provider.price_per_1k_output),
        }
    return metadata


@dataclass
class ImportItemResult:
    external_id: str
    status: str  # created | updated | unchanged | failed | skipped
    version_id: int | None = None
    model: str = ""
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def _task_type_for(metadata: dict[str, Any]) -> str:
    task = metadata.get("model_info", {}).get("task", "")
    if task in RegisteredModel.Task.values:
        return task
    if task in (
        "text-generation",
        "summarization",
        "translation",
        "question-answering",
    ):
        return RegisteredModel.Task.COMPLETION
    if task in ("text-classification", "token-classification", "image-classification"):
        return RegisteredModel.Task.CLASSIFICATION
    return RegisteredModel.Task.OTHER


def _check_import_input(external_id: str, model_name: str, metadata: Any) -> None:
    """What would otherwise fail in the database or the merge below, as field errors
    (so a batch reports the item instead of failing)."""
    problems: dict[str, list[str]] = {}
    if len(external_id) > 300:
        problems["external_id"] = ["At most 300 characters."]
    if len(model_name) > 200:
        problems["model_name"] = ["At most 200 characters."]
    if metadata is not None and not (
        isinstance(metadata, dict) and isinstance(metadata.get("model_info", {}), dict)
    ):
        problems["metadata"] = ["Must be a JSON object (and model_info one too)."]
    if problems:
        raise ApplicationError(
            "The import item is not valid.", code="invalid", fields=problems
        )


def model_import(
    *,
    provider: ProviderConfig,
    external_id: str,
    actor: Any,
    discovered: DiscoveredModel | None = None,
    metadata: dict[str, Any] | None = None,
    model_name: str = "",
    activate: bool = False,
) -> ImportItemResult:
    """Register (or refresh) one external model as a version; idempotent per
    (provider, external id)."""
    assert_tenant_schema()
    if not external_id:
        raise ApplicationError(
            "An external model id is needed.",
            code="invalid",
            fields={"external_id": ["This field is required."]},
        )
    _check_import_input(external_id, model_name, metadata)
    if metadata is None:
        found = discovered or DiscoveredModel(id=external_id, name=external_id)
        metadata = metadata_from_discovery(provider, found)
    metadata = {
        **metadata,
        "model_info": {
            **metadata.get("model_info", {}),
            "provider": provider.kind,
            "external_id": external_id,
        },
    }
    with transaction.atomic():
        existing = (
            ModelVersion.objects.select_for_update()
            .filter(provider=provider, external_id=external_id)
            .first()
        )
        if existing is not None:
            clean = _metadata_or_error(metadata)
            changed = clean != existing.metadata
            if changed:
                version_update_metadata(version=existing, metadata=clean, actor=actor)
            if activate and existing.status != ModelVersion.Status.ACTIVE:
                version_set_status(version=existing, status="active", actor=actor)
                changed = True
            return ImportItemResult(
                external_id,
                "updated" if changed else "unchanged",
                existing.pk,
                existing.model.name,
            )
        name = (model_name or f"{provider.name}/{external_id}")[:200]
        model = RegisteredModel.objects.filter(name=name).first() or model_create(
            name=name,
            actor=actor,
            task_type=_task_type_for(_metadata_or_error(metadata)),
            description=metadata.get("description", ""),
        )
        version = version_create(
            model=model,
            source=ModelVersion.Source.PROVIDER,
            actor=actor,
            metadata=metadata,
            provider=provider,
            external_id=external_id,
            status=ModelVersion.Status.ACTIVE
            if activate
            else ModelVersion.Status.DRAFT,
        )
        return ImportItemResult(external_id, "created", version.pk, model.name)


def model_import_batch(
    *,
    provider: ProviderConfig,
    items: list[dict[str, Any]],
    mode: str,
    actor: Any,
    activate: bool = False,
) -> dict[str, Any]:
    """Import many. `fail_fast`: all or nothing in one transaction, stopping at the first
    failure. `skip_errors`: each good item lands, each bad one is reported with why."""
    if mode not in ("skip_errors", "fail_fast"):
        raise ApplicationError(
            "mode is skip_errors or fail_fast.",
            code="invalid",
            fields={"mode": ["Choose skip_errors or fail_fast."]},
        )
    results: list[ImportItemResult] = []

    def one(item: dict[str, Any]) -> ImportItemResult:
        return model_import(
            provider=provider,
            external_id=str(item.get("external_id") or ""),
            metadata=item.get("metadata"),
            model_name=str(item.get("model_name") or ""),
            activate=activate,
            actor=actor,
        )

    if mode == "fail_fast":
        try:
            with transaction.atomic():
                for index, item in enumerate(items):
                    try:
                        results.append(one(item))
                    except ApplicationError as exc:
                        results.append(
                            ImportItemResult(
                                str(item.get("external_id") or ""),
                                "failed",
                                reason=exc.message,
                                fields=exc.fields or {},
                            )
                        )
                        raise _Abort(index) from exc
        except _Abort as stop:
            rolled_back = [
                ImportItemResult(
                    r.external_id,
                    "skipped",
                    model=r.model,
                    reason="rolled back: an item failed",
                )
                for r in results[: stop.index]
            ]
            untouched = [
                ImportItemResult(
                    str(i.get("external_id") or ""),
                    "skipped",
                    reason="not attempted: an item failed",
                )
                for i in items[stop.index + 1 :]
            ]
            results = [*rolled_back, results[stop.index], *untouched]
    else:
        for item in items:
            try:
                with transaction.atomic():
                    results.append(one(item))
            except ApplicationError as exc:
                results.append(
                    ImportItemResult(
                        str(item.get("external_id") or ""),
                        "failed",
                        reason=exc.message,
                        fields=exc.fields or {},
                    )
                )
    summary = {
        s: sum(r.status == s for r in results)
        for s in ("created", "updated", "unchanged", "failed", "skipped")
    }
    return {"mode": mode, "summary": summary, "results": [r.__dict__ for r in results]}


class _Abort(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def version_get(*, pk: int) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("model", "provider").get(pk=pk)
    except ModelVersion.DoesNotExist as exc:
        raise NotFoundError(f"No model version {pk}.") from exc
