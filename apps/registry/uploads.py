"""Register a model from an uploaded skops or ONNX file (plus a label map / model card)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.core.files import File
from django.db import transaction
from rest_framework import serializers

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError
from apps.registry.artifacts import (
    artifact_file_path,
    artifact_files_delete,
    artifact_load,
    artifact_read_verified,
    artifact_store,
    feature_schema_from_model,
)
from apps.registry.metadata import validate_metadata
from apps.registry.models import ModelArtifact, ModelVersion, RegisteredModel
from apps.registry.services import model_create, version_create

EXTRA_ROLES = (
    ModelArtifact.Role.LABEL_MAP,
    ModelArtifact.Role.MODEL_CARD,
    ModelArtifact.Role.BACKGROUND,
    ModelArtifact.Role.OTHER,
)
FRAMEWORKS: dict[str, str] = {
    ModelArtifact.Format.SKOPS: "scikit-learn",
    ModelArtifact.Format.ONNX: "onnx",
}


def _messages(detail: Any, prefix: str = "") -> list[str]:
    """DRF's nested error detail as "path: message" lines."""
    if isinstance(detail, dict):
        return [
            line
            for key, sub in detail.items()
            for line in _messages(sub, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(detail, list) and not all(isinstance(v, str) for v in detail):
        return [
            line
            for index, sub in enumerate(detail)
            for line in _messages(sub, f"{prefix}.{index}" if prefix else str(index))
        ]
    values = detail if isinstance(detail, list) else [detail]
    return [f"{prefix}: {v}" if prefix else str(v) for v in values]


def input_schema_clean(value: Any) -> list[dict[str, Any]]:
    """A feature schema (list of {name, type, ...}) validated as canonical metadata."""
    if not isinstance(value, list) or not value:
        raise ApplicationError(
            "input_schema must be a non-empty list of features.",
            code="invalid",
            fields={"input_schema": ["A non-empty list of {name, type} objects."]},
        )
    try:
        clean = validate_metadata({"input_schema": value})
    except serializers.ValidationError as exc:
        detail = exc.detail.get("input_schema", exc.detail)  # type: ignore[union-attr]
        raise ApplicationError(
            "The input_schema is not valid.",
            code="invalid",
            fields={"input_schema": _messages(detail)},
        ) from exc
    return list(clean["input_schema"])


def _metadata_for_upload(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ApplicationError(
            "metadata must be a JSON object.",
            code="invalid",
            fields={"metadata": ["A JSON object."]},
        )
    info = metadata.get("model_info")
    return {
        **metadata,
        "model_info": {
            **(info if isinstance(info, dict) else {}),
            "provider": "upload",
        },
    }


def _schema_for(
    loaded: Any, given: list[dict[str, Any]] | None, fmt: str
) -> list[dict[str, Any]]:
    derived = feature_schema_from_model(loaded)
    if given is None:
        if derived is None:
            raise ApplicationError(
                "The model does not name its features (it was fitted without "
                "feature_names_in_); send an input_schema.",
                code="invalid",
                fields={
                    "input_schema": ["Required: the model does not name its features."]
                },
            )
        return derived
    if derived is None or fmt == ModelArtifact.Format.ONNX:
        # ONNX inputs are tensors; a given schema may name the columns inside them.
        return given
    expected = [f["name"] for f in derived]
    by_name = {f["name"]: f for f in given}
    if set(by_name) != set(expected):
        raise ApplicationError(
            "The input_schema does not match the features the model was fitted on.",
            code="invalid",
            fields={
                "input_schema": [f"The model expects exactly: {', '.join(expected)}."]
            },
        )
    return [by_name[name] for name in expected]  # the model's column order


def _task_type(loaded: Any) -> str | None:
    from sklearn.base import is_classifier, is_regressor

    try:
        if is_classifier(loaded):
            return RegisteredModel.Task.CLASSIFICATION
        if is_regressor(loaded):
            return RegisteredModel.Task.REGRESSION
    except Exception:  # not a scikit-learn object
        return None
    return None


def version_upload(
    *,
    file: File,
    actor: Any,
    model_name: str = "",
    model: RegisteredModel | None = None,
    extra_files: Sequence[tuple[str, File]] = (),
    input_schema: Any = None,
    metadata: Any = None,
    task_type: str | None = None,
) -> ModelVersion:
    """A new draft version (source "upload") of `model`, or of the model named
    `model_name` (created if new), with its files. All or nothing: when anything is
    refused no row and no file is left."""
    assert_tenant_schema()
    model_name = (model_name or "").strip()
    if model is None and not model_name:
        raise ApplicationError(
            "Name the model.", code="invalid", fields={"model_name": ["Required."]}
        )
    if len(model_name) > 200:
        raise ApplicationError(
            "The model name is too long.",
            code="invalid",
            fields={"model_name": ["At most 200 characters."]},
        )
    clean_metadata = _metadata_for_upload(metadata)
    if input_schema in (None, "", []):
        input_schema = clean_metadata.get("input_schema")
    given = input_schema_clean(input_schema) if input_schema else None
    seen: set[str] = set()
    for role, _ in extra_files:
        if role not in EXTRA_ROLES:
            raise ApplicationError(
                f"Unknown extra file role '{role}'.",
                code="invalid",
                fields={"extra_files": [f"Roles: {', '.join(EXTRA_ROLES)}."]},
            )
        if role in seen and role != ModelArtifact.Role.OTHER:
            raise ApplicationError(
                f"Only one {role} per version.",
                code="invalid",
                fields={role: ["Only one file."]},
            )
        seen.add(role)

    written: list[Path] = []
    try:
        with transaction.atomic():
            if model is None:
                model = RegisteredModel.objects.filter(
                    name=model_name
                ).first() or model_create(
                    name=model_name, actor=actor, task_type=task_type or "other"
                )
            version = version_create(
                model=model,
                source=ModelVersion.Source.UPLOAD,
                actor=actor,
                metadata=clean_metadata,
                input_schema=given,
            )
            artifact = artifact_store(
                version=version,
                uploaded_file=file,
                role=ModelArtifact.Role.MODEL,
                actor=actor,
            )
            written.append(artifact_file_path(artifact))
            artifacts = [artifact]
            for role, extra in extra_files:
                stored = artifact_store(
                    version=version, uploaded_file=extra, role=role, actor=actor
                )
                written.append(artifact_file_path(stored))
                artifacts.append(stored)

            loaded = artifact_load(artifact)
            if artifact.format == ModelArtifact.Format.SKOPS and not callable(
                getattr(loaded, "predict", None)
            ):
                raise ApplicationError(
                    f"The skops file holds a {type(loaded).__name__}, not a model "
                    "with predict().",
                    code="not_a_model",
                    fields={"file": ["Upload a fitted estimator or pipeline."]},
                )
            schema = _schema_for(loaded, given, artifact.format)
            for stored in artifacts:
                if stored.role == ModelArtifact.Role.BACKGROUND:
                    _check_background(stored, schema)
            training = clean_metadata.get("training") or {}
            version.input_schema = schema
            version.metadata = {
                **version.metadata,
                "input_schema": schema,
                "training": {
                    "framework": FRAMEWORKS[artifact.format],
                    **training,
                },
            }
            version.save(update_fields=["input_schema", "metadata", "updated_at"])
            if not task_type and model.task_type == RegisteredModel.Task.OTHER:
                inferred = _task_type(loaded)
                if inferred and model.versions.count() == 1:
                    model.task_type = inferred
                    model.save(update_fields=["task_type", "updated_at"])
            audit_record(
                actor=actor,
                action="version.upload",
                obj=version,
                after={
                    "model": model.name,
                    "number": version.number,
                    "artifacts": [
                        {
                            "role": a.role,
                            "format": a.format,
                            "name": a.original_name,
                            "sha256": a.sha256,
                            "size": a.size,
                        }
                        for a in artifacts
                    ],
                    "input_schema": [f["name"] for f in schema],
                },
            )
    except BaseException:
        artifact_files_delete(written)
        raise
    return version


def _check_background(artifact: ModelArtifact, schema: list[dict[str, Any]]) -> None:
    """A background sample is a JSON list of 10-1000 rows with the model's features."""
    from apps.groups.validation import InputError, validate_rows

    try:
        rows = json.loads(artifact_read_verified(artifact))
    except ValueError:
        rows = None
    if not isinstance(rows, list) or not 10 <= len(rows) <= 1000:
        raise ApplicationError(
            "A background sample is a JSON list of 10 to 1000 input rows.",
            code="invalid",
            fields={"background": ["10 to 1000 rows of features"]},
        )
    try:
        validate_rows(schema, rows)
    except InputError as exc:
        first = dict(list(exc.fields.items())[:5])
        raise ApplicationError(
            "The background sample does not match the model's features.",
            code="invalid",
            fields={f"background.{k}": v for k, v in first.items()},
        ) from exc
