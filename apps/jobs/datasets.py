"""CSV (and JSONL fine-tuning) datasets: store (streamed, hashed, limited), infer a schema, preview, load."""

from __future__ import annotations

import hashlib
import io
import json
import math
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError
from apps.jobs.models import Dataset
from apps.registry.artifacts import sanitise_name, tenant_media_root

CHUNK = 1024 * 1024
PREVIEW_ROWS = 10
# A numeric column with at most this many distinct values may be a class label.
CLASS_LIMIT = 20


def max_bytes() -> int:
    return int(getattr(settings, "DATASET_MAX_BYTES", 50 * 1024 * 1024))


def max_rows() -> int:
    return int(getattr(settings, "DATASET_MAX_ROWS", 1_000_000))


def max_columns() -> int:
    return int(getattr(settings, "DATASET_MAX_COLUMNS", 500))


def min_rows() -> int:
    return int(getattr(settings, "DATASET_MIN_ROWS", 10))


def _refuse(message: str, code: str = "invalid_dataset") -> ApplicationError:
    return ApplicationError(message, code=code, fields={"file": [message]})


# Room for a multipart body's boundaries, headers and small fields around the file.
MULTIPART_OVERHEAD = 64 * 1024


def upload_size_check(content_length: str | None) -> None:
    """Refuse an upload whose declared body cannot fit under the limit before any of
    it is parsed (parsing 50 MB of multipart costs seconds of CPU to say no)."""
    try:
        length = int(content_length or 0)
    except ValueError:
        return
    limit = max_bytes()
    if length > limit + MULTIPART_OVERHEAD:
        raise ApplicationError(
            f"The file is larger than the limit of {limit} bytes.",
            code="payload_too_large",
            status_code=413,
            fields={"file": [f"The file is larger than the limit of {limit} bytes."]},
        )


def dataset_file_path(dataset: Dataset) -> Path:
    root = tenant_media_root(assert_tenant_schema())
    path = (root / dataset.path).resolve()
    if root not in path.parents:
        raise RuntimeError("dataset path escapes the tenant's directory")
    return path


def _column_type(series: Any) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        non_null = series.dropna()
        if len(non_null) and (non_null == non_null.round()).all():
            return "integer"
        return "number"
    return "string"


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def infer_schema(frame: Any) -> dict[str, Any]:
    """Columns (type, missing, unique), candidate targets and a preview. Pure."""
    columns = []
    candidates = []
    for name in frame.columns:
        series = frame[name]
        kind = _column_type(series)
        unique = int(series.nunique(dropna=True))
        missing = int(series.isna().sum())
        columns.append(
            {"name": str(name), "type": kind, "missing": missing, "unique": unique}
        )
        if unique < 2 or missing:
            continue
        if kind in ("number", "integer"):
            problem = (
                "classification"
                if kind == "integer" and unique <= CLASS_LIMIT
                else "regression"
            )
            candidates.append({"name": str(name), "problem_type": problem})
        elif unique <= CLASS_LIMIT or kind == "boolean":
            candidates.append({"name": str(name), "problem_type": "classification"})
    preview = [
        {str(k): _plain(v) for k, v in row.items()}
        for row in frame.head(PREVIEW_ROWS).to_dict(orient="records")
    ]
    return {"columns": columns, "candidate_targets": candidates, "preview": preview}


def _header_columns(data: bytes) -> int:
    """Columns on the first line, counted without building them: the commas outside
    double quotes, plus one (a doubled quote inside a quoted name splits into an empty
    outside part, so it counts nothing). A million-column header costs a copy of the
    line, not a million strings."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    return sum(part.count(b",") for part in line.split(b'"')[::2]) + 1


def read_frame(data: bytes) -> Any:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), nrows=max_rows() + 1)
    except UnicodeDecodeError as exc:
        raise _refuse("The file is not UTF-8 text.") from exc
    except Exception as exc:  # pandas raises several parser errors
        raise _refuse(f"The file is not a readable CSV: {exc}") from exc
    return frame


def dataset_read_verified(dataset: Dataset) -> bytes:
    data = dataset_file_path(dataset).read_bytes()
    if hashlib.sha256(data).hexdigest() != dataset.sha256:
        raise ApplicationError(
            f"Dataset {dataset.pk} does not match its checksum.", code="tampered"
        )
    return data


def dataset_load(dataset: Dataset) -> Any:
    """The dataset as a DataFrame, verified against its sha256."""
    return read_frame(dataset_read_verified(dataset))


def dataset_create(*, file: File, actor: Any, name: str = "") -> Dataset:
    """Store an uploaded CSV under a random name, hash it, check its limits and infer
    its schema. Nothing stays on disk when it is refused."""
    schema = assert_tenant_schema()
    limit = max_bytes()
    declared = getattr(file, "size", None)
    if declared is not None and declared > limit:
        raise _refuse(f"The file is larger than the limit of {limit} bytes.")
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    for chunk in file.chunks(CHUNK):
        buffer.write(chunk)
        if buffer.tell() > limit:
            raise _refuse(f"The file is larger than the limit of {limit} bytes.")
        digest.update(chunk)
    data = buffer.getvalue()
    if not data.strip():
        raise _refuse("The file is empty.")
    if b"\x00" in data[:8192]:
        raise _refuse("The file is binary, not a CSV.")
    original = sanitise_name(getattr(file, "name", ""))
    if original.lower().endswith(".jsonl"):
        return _store(
            schema, data, digest.hexdigest(), original, name, actor, jsonl_inspect(data)
        )
    # Counted on the header line first: pandas takes ~25 s to refuse 10^6 columns.
    if _header_columns(data) > max_columns():
        raise _refuse(f"The file has more than {max_columns()} columns.")
    frame = read_frame(data)
    if len(frame) > max_rows():
        raise _refuse(f"The file has more than {max_rows()} rows.")
    if len(frame.columns) > max_columns():
        raise _refuse(f"The file has more than {max_columns()} columns.")
    if len(frame.columns) < 2:
        raise _refuse("A dataset needs at least two columns (features and a target).")
    if len(frame) < min_rows():
        raise _refuse(f"A dataset needs at least {min_rows()} rows.")
    names = [str(c) for c in frame.columns]
    if any(n.startswith("Unnamed:") or not n.strip() for n in names):
        raise _refuse("Every column needs a name in the header row.")
    inferred = {
        **infer_schema(frame),
        "row_count": len(frame),
        "column_count": len(frame.columns),
        "format": Dataset.Format.CSV,
    }
    return _store(schema, data, digest.hexdigest(), original, name, actor, inferred)


def jsonl_inspect(data: bytes) -> dict[str, Any]:
    """A chat fine-tuning file: one JSON object with a `messages` list per line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse("The file is not UTF-8 text.") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > max_rows():
        raise _refuse(f"The file has more than {max_rows()} lines.")
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise _refuse(f"Line {number} is not JSON.") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise _refuse(f"Line {number} has no `messages` list.")
    if len(lines) < min_rows():
        raise _refuse(f"A fine-tuning file needs at least {min_rows()} examples.")
    return {
        "format": Dataset.Format.JSONL,
        "row_count": len(lines),
        "column_count": 0,
        "columns": [],
        "candidate_targets": [],
        "preview": [json.loads(line) for line in lines[:3]],
    }


def _store(
    schema: str,
    data: bytes,
    sha256: str,
    original: str,
    name: str,
    actor: Any,
    inferred: dict[str, Any],
) -> Dataset:
    directory = tenant_media_root(schema) / "datasets"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{secrets.token_hex(16)}.{inferred['format']}"
    target.write_bytes(data)
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                name=(name or original.rsplit(".", 1)[0] or "dataset")[:200],
                path=target.relative_to(tenant_media_root(schema)).as_posix(),
                original_name=original,
                sha256=sha256,
                size=len(data),
                created_by=actor if getattr(actor, "pk", None) else None,
                **inferred,
            )
            audit_record(
                actor=actor,
                action="dataset.create",
                obj=dataset,
                after={
                    "name": dataset.name,
                    "sha256": dataset.sha256,
                    "rows": dataset.row_count,
                    "columns": dataset.column_count,
                },
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return dataset
