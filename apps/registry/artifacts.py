"""The one owner of artifact files: store (sniff, refuse, hash), verify, load, cache.

Files live at MEDIA_ROOT/<schema>/artifacts/<version id>/<random token>.<ext>; the
client's file name is kept only as `original_name`. Uploads are never unpickled: the
format is decided from the content, pickle and joblib are refused, skops files may
only name types skops trusts by itself or that are in SKOPS_ALLOWED_TYPES, and ONNX
models may not point at external data. Every load re-checks the sha256 first.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import logging
import lzma
import os
import pickletools
import secrets
import threading
import unicodedata
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files import File
from rest_framework import status

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, NotFoundError
from apps.registry.models import ModelArtifact, ModelVersion

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_CACHE_SIZE = 16
# A skops file is a zip; skops writes it uncompressed, so this only stops zip bombs.
UNPACKED_FACTOR = 10
CHUNK = 1024 * 1024
# Enough of a compressed stream to see the pickle header inside it.
SNIFF_BYTES = 4096

# Types that skops does not trust by itself but that the estimators we support need.
# Built by fitting and `skops.io.dump`-ing LogisticRegression, LinearRegression,
# Ridge, RandomForest{Classifier,Regressor}, GradientBoosting{Classifier,Regressor},
# HistGradientBoosting{Classifier,Regressor} (also with categorical_features),
# DecisionTree{Classifier,Regressor}, StandardScaler, OneHotEncoder, Pipeline and
# ColumnTransformer (scikit-learn 1.9.1, skops 0.16.0) and recording what
# `skops.io.get_untrusted_types` returned; the linear models, scalers, encoders,
# pipelines and numpy dtypes came back empty (skops trusts them already).
SKOPS_ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        # Fitted tree structure of DecisionTree*, RandomForest*, GradientBoosting*.
        "sklearn.tree._tree.Tree",
        # One predictor per iteration (and class) of HistGradientBoosting*.
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # HistGradientBoosting* with categorical features keep
        # partial(check_array, ...). skops checks the wrapped function on its own,
        # so partial(os.system, ...) is still refused as `posix.system`.
        "functools.partial",
        "sklearn.utils.validation.check_array",
    }
)

PICKLE_REFUSAL = (
    "pickle/joblib files can run arbitrary code when loaded; export with skops "
    "(skops.io.dump) or ONNX."
)
MODEL_FORMATS = {ModelArtifact.Format.SKOPS, ModelArtifact.Format.ONNX}
EXTENSIONS: dict[str, str] = {
    ModelArtifact.Format.SKOPS: "skops",
    ModelArtifact.Format.ONNX: "onnx",
    ModelArtifact.Format.JSON: "json",
    ModelArtifact.Format.TEXT: "txt",
}
# What `onnxruntime.NodeArg.type` says -> canonical feature type.
ONNX_FEATURE_TYPES = {
    "tensor(float)": "number",
    "tensor(double)": "number",
    "tensor(float16)": "number",
    "tensor(bfloat16)": "number",
    "tensor(int8)": "integer",
    "tensor(int16)": "integer",
    "tensor(int32)": "integer",
    "tensor(int64)": "integer",
    "tensor(uint8)": "integer",
    "tensor(uint16)": "integer",
    "tensor(uint32)": "integer",
    "tensor(uint64)": "integer",
    "tensor(string)": "string",
    "tensor(bool)": "boolean",
}


def max_bytes() -> int:
    return int(getattr(settings, "ARTIFACT_MAX_BYTES", DEFAULT_MAX_BYTES))


def _field_for(role: str) -> str:
    """The form/API field an artifact of this role arrives in."""
    return "file" if role == ModelArtifact.Role.MODEL else role


def _refuse(
    message: str, role: str, code: str = "invalid_artifact", status_code: int = 400
) -> ApplicationError:
    return ApplicationError(
        message,
        code=code,
        fields={_field_for(role): [message]},
        status_code=status_code,
    )


# --- paths ---------------------------------------------------------------------------


def tenant_media_root(schema: str) -> Path:
    """MEDIA_ROOT/<schema>/, resolved; a tenant's files never leave it."""
    base = Path(settings.MEDIA_ROOT).resolve()
    root = (base / schema).resolve()
    if root.parent != base:
        raise RuntimeError(f"schema name {schema!r} does not make a media directory")
    return root


def artifact_file_path(artifact: ModelArtifact) -> Path:
    """Absolute path of an artifact in the current tenant, refused if it escapes."""
    root = tenant_media_root(assert_tenant_schema())
    path = (root / artifact.path).resolve()
    if not path.is_relative_to(root):
        raise ApplicationError(
            "The artifact's stored path leaves its organisation's directory.",
            code="artifact_tampered",
            status_code=status.HTTP_409_CONFLICT,
        )
    return path


def sanitise_name(name: str | None) -> str:
    """The client's file name made harmless for display: no directories, no control
    characters, at most 255 characters."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    base = base.lstrip(".") or "upload"
    return base[-255:]


# --- format sniffing -------------------------------------------------------------------


def _starts_like_pickle(head: bytes) -> bool:
    # Protocol 2+ opens with PROTO (0x80) and the protocol number.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _decompressed_head(head: bytes) -> bytes | None:
    """The first bytes of joblib's compressed containers, if `head` is one."""
    attempts: list[Any] = []
    if head[:2] == b"ZF":  # joblib's old zlib file: "ZF", hex length to 19 bytes
        attempts.append(lambda: zlib.decompressobj().decompress(head[21:], 16))
    if head[:1] == b"\x78":  # zlib
        attempts.append(lambda: zlib.decompressobj().decompress(head, 16))
    if head[:2] == b"\x1f\x8b":  # gzip
        attempts.append(lambda: zlib.decompressobj(31).decompress(head, 16))
    if head[:3] == b"BZh":  # bz2
        import bz2

        attempts.append(lambda: bz2.BZ2Decompressor().decompress(head, 16))
    if head[:6] == b"\xfd7zXZ\x00" or head[:2] == b"\x5d\x00":  # xz, lzma
        attempts.append(lambda: lzma.LZMADecompressor().decompress(head, 16))
    for attempt in attempts:
        try:
            out = attempt()
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
            continue
        if out:
            return bytes(out)
    return None


def _sniff_pickle_or_joblib(head: bytes) -> str | None:
    if _starts_like_pickle(head):
        return "pickle"
    if head[:4] == b"\x04\x22\x4d\x18":  # lz4 frame (joblib compress="lz4")
        return "joblib"
    inner = _decompressed_head(head)
    if inner is not None and _starts_like_pickle(inner):
        return "joblib"
    return None


def _refuse_pickle(kind: str | None, role: str) -> None:
    if kind is not None:
        raise _refuse(
            f"This is a {kind} file. {PICKLE_REFUSAL}", role, code="pickle_refused"
        )


def _is_pickle_stream(data: bytes) -> bool:
    """Old (protocol 0/1) pickles have no magic; walk the opcodes without running
    any of them."""
    if not data.endswith(b"."):
        return False
    try:
        end: int | None = None
        for _opcode, _arg, pos in pickletools.genops(io.BytesIO(data)):
            end = pos
        return end == len(data) - 1
    except Exception:  # anything unparseable is not a pickle
        return False


def _check_skops(data: bytes, role: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise _refuse("The file is a damaged zip archive.", role) from exc
    if "schema.json" not in names:
        raise _refuse(
            "The zip archive is not a skops file (it has no schema.json).", role
        )
    if unpacked > UNPACKED_FACTOR * max(len(data), 1) and unpacked > max_bytes():
        raise _refuse("The skops archive unpacks to an implausible size.", role)
    skops_untrusted_check(data, role=role)


def skops_untrusted_check(data: bytes, *, role: str = "model") -> list[str]:
    """The untrusted types the skops file names; refused unless all are allowed."""
    import skops.io as sio

    try:
        untrusted = sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises many kinds on bad input
        raise _refuse(f"The skops file cannot be read: {exc}", role) from exc
    refused = [t for t in untrusted if t not in SKOPS_ALLOWED_TYPES]
    if refused:
        raise _refuse(
            f"The skops file contains types that are not allowed: {', '.join(refused)}. "
            "Only scikit-learn estimators, pipelines and preprocessing are accepted.",
            role,
            code="untrusted_types",
        )
    return untrusted


def _onnx_nodes_tensors(nodes: Iterable[Any]) -> Iterator[Any]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _onnx_graph_tensors(attr.g)
            for graph in attr.graphs:
                yield from _onnx_graph_tensors(graph)


def _onnx_graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _onnx_nodes_tensors(graph.node)


def _check_onnx(data: bytes, role: str) -> Any:
    try:
        import onnx
    except ImportError as exc:  # onnx is optional
        raise _refuse(
            "The model file is not a skops file, and ONNX support is not installed.",
            role,
        ) from exc
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise _refuse(
            "The model file is neither a skops file nor an ONNX model.", role
        ) from exc
    if not model.HasField("graph") or not model.opset_import:
        raise _refuse("The model file is neither a skops file nor an ONNX model.", role)
    tensors = [
        *_onnx_graph_tensors(model.graph),
        *(
            t
            for function in model.functions
            for t in _onnx_nodes_tensors(function.node)
        ),
    ]
    external = [
        t.name or "(unnamed)"
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data)
    ]
    if external:
        raise _refuse(
            "ONNX models with external data are not accepted (tensors "
            f"{', '.join(external[:10])}); save the model as one file.",
            role,
            code="onnx_external_data",
        )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError and friends
        raise _refuse(f"The ONNX model is not valid: {exc}", role) from exc
    return model


def detect_format(data: bytes, *, role: str) -> str:
    """The artifact format from its content (never the name); refuses what is not
    allowed for the role."""
    _refuse_pickle(_sniff_pickle_or_joblib(data[:SNIFF_BYTES]), role)
    if _is_pickle_stream(data):
        _refuse_pickle("pickle", role)
    if role == ModelArtifact.Role.MODEL:
        if data[:4] == b"PK\x03\x04":
            _check_skops(data, role)
            return ModelArtifact.Format.SKOPS
        _check_onnx(data, role)
        return ModelArtifact.Format.ONNX
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse("A label map or model card is JSON or UTF-8 text.", role) from exc
    if "\x00" in text:
        raise _refuse("A label map or model card is JSON or UTF-8 text.", role)
    try:
        json.loads(text)
    except ValueError:
        return ModelArtifact.Format.TEXT
    return ModelArtifact.Format.JSON


# --- store -----------------------------------------------------------------------------


def artifact_store(
    *, version: ModelVersion, uploaded_file: File, role: str, actor: Any
) -> ModelArtifact:
    """Stream the file to the tenant's artifact directory (hashing as it goes), decide
    and check its format from its content, and record it. Nothing stays on disk when
    it is refused."""
    schema = assert_tenant_schema()
    if role not in ModelArtifact.Role.values:
        raise ApplicationError(
            f"Unknown artifact role '{role}'.",
            code="invalid",
            fields={"role": [f"one of {ModelArtifact.Role.values}"]},
        )
    limit = max_bytes()
    declared = getattr(uploaded_file, "size", None)
    if declared is not None and declared > limit:
        raise _too_large(role, limit)
    directory = tenant_media_root(schema) / "artifacts" / str(version.pk)
    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    partial = directory / f"{token}.part"
    digest = hashlib.sha256()
    size = 0
    final: Path | None = None
    try:
        with open(partial, "xb") as out:
            for chunk in uploaded_file.chunks(CHUNK):
                if not size:
                    _refuse_pickle(_sniff_pickle_or_joblib(chunk[:SNIFF_BYTES]), role)
                size += len(chunk)
                if size > limit:
                    raise _too_large(role, limit)
                digest.update(chunk)
                out.write(chunk)
        data = partial.read_bytes()
        if not data:
            raise _refuse("The file is empty.", role)
        fmt = detect_format(data, role=role)
        final = directory / f"{token}.{EXTENSIONS[fmt]}"
        os.replace(partial, final)
        artifact = ModelArtifact.objects.create(
            version=version,
            role=role,
            format=fmt,
            path=final.relative_to(tenant_media_root(schema)).as_posix(),
            original_name=sanitise_name(getattr(uploaded_file, "name", "")),
            sha256=digest.hexdigest(),
            size=size,
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        if final is not None:
            final.unlink(missing_ok=True)
        _remove_if_empty(directory)
        raise
    audit_record(
        actor=actor,
        action="artifact.store",
        obj=artifact,
        after={
            "version": version.pk,
            "role": role,
            "format": fmt,
            "sha256": artifact.sha256,
            "size": size,
        },
    )
    return artifact


def _too_large(role: str, limit: int) -> ApplicationError:
    return _refuse(
        f"The file is larger than the limit of {limit} bytes.",
        role,
        code="file_too_large",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or already gone
        directory.rmdir()


def artifact_files_delete(paths: Iterable[Path]) -> None:
    """Remove written files (after a rolled-back upload)."""
    for path in paths:
        path.unlink(missing_ok=True)
        _remove_if_empty(path.parent)


# --- read, verify, load ------------------------------------------------------------------


def artifact_get(*, version_id: int, artifact_id: int) -> ModelArtifact:
    """An artifact of a version in the current tenant, or 404."""
    assert_tenant_schema()
    artifact = (
        ModelArtifact.objects.select_related("version")
        .filter(pk=artifact_id, version_id=version_id)
        .first()
    )
    if artifact is None:
        raise NotFoundError(f"No artifact {artifact_id} in version {version_id}.")
    return artifact


def _tampered(artifact: ModelArtifact) -> ApplicationError:
    logger.error(
        "artifact sha256 mismatch",
        extra={"artifact_id": artifact.pk, "path": artifact.path},
    )
    return ApplicationError(
        f"The stored file of artifact {artifact.pk} does not match its sha256; "
        "it was changed on disk and will not be used.",
        code="artifact_tampered",
        status_code=status.HTTP_409_CONFLICT,
    )


def _open(artifact: ModelArtifact) -> BinaryIO:
    path = artifact_file_path(artifact)
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError as exc:
        raise ApplicationError(
            f"The file of artifact {artifact.pk} is missing.",
            code="artifact_missing",
            status_code=status.HTTP_409_CONFLICT,
        ) from exc


def artifact_read_verified(artifact: ModelArtifact) -> bytes:
    """The artifact's bytes, refused with `artifact_tampered` unless they hash to the
    stored sha256."""
    with _open(artifact) as handle:
        data = handle.read()
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), artifact.sha256):
        raise _tampered(artifact)
    return data


def artifact_open_verified(artifact: ModelArtifact) -> BinaryIO:
    """An open handle at offset 0 whose content hashed to the stored sha256 (for
    streaming downloads without holding the file in memory)."""
    handle = _open(artifact)
    try:
        digest = hashlib.sha256()
        while block := handle.read(CHUNK):
            digest.update(block)
        if not hmac.compare_digest(digest.hexdigest(), artifact.sha256):
            raise _tampered(artifact)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


class _LRU:
    """A small thread-safe LRU of loaded models."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, int, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str]) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: tuple[str, int, str], value: Any) -> None:
        size = artifact_cache_capacity()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_loaded = _LRU()


def artifact_cache_clear() -> None:
    """Forget every loaded model of this process (tests; after a deploy)."""
    _loaded.clear()


def artifact_cache_size() -> int:
    return len(_loaded)


def artifact_cache_capacity() -> int:
    """How many loaded models a process keeps (ARTIFACT_CACHE_SIZE)."""
    return max(int(getattr(settings, "ARTIFACT_CACHE_SIZE", DEFAULT_CACHE_SIZE)), 1)


def artifact_load(artifact: ModelArtifact) -> Any:
    """The loaded model: a scikit-learn estimator (skops) or an onnxruntime
    InferenceSession. Verified against its sha256 and re-checked before loading;
    cached per process by (schema, artifact id, sha256)."""
    schema = assert_tenant_schema()
    key = (schema, int(artifact.pk), artifact.sha256)
    cached = _loaded.get(key)
    if cached is not None:
        return cached
    if artifact.format not in MODEL_FORMATS:
        raise ApplicationError(
            f"Artifact {artifact.pk} is {artifact.format}, not a model file.",
            code="not_a_model",
        )
    data = artifact_read_verified(artifact)
    trusted: list[str] = []
    if artifact.format == ModelArtifact.Format.SKOPS:
        trusted = skops_untrusted_check(data, role=artifact.role)
    else:
        _check_onnx(data, artifact.role)
    try:
        loaded = _deserialise(artifact.format, data, trusted)
    except ApplicationError:
        raise
    except Exception as exc:  # version skew, unsupported operators...
        raise _refuse(
            f"The {artifact.format} file cannot be loaded: {exc}",
            artifact.role,
            code="artifact_unloadable",
        ) from exc
    _loaded.put(key, loaded)
    return loaded


def _deserialise(fmt: str, data: bytes, trusted: list[str]) -> Any:
    """Only after the hash and content checks: skops trusting exactly the allowed
    types this file names, or an onnxruntime session on the CPU."""
    if fmt == ModelArtifact.Format.SKOPS:
        import skops.io as sio

        return sio.loads(data, trusted=trusted)
    try:
        import onnxruntime
    except ImportError as exc:  # onnxruntime is optional
        raise ApplicationError(
            "ONNX models cannot be run here: onnxruntime is not installed.",
            code="artifact_unloadable",
        ) from exc
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


# --- feature schema -------------------------------------------------------------------------


def feature_schema_from_model(model: Any) -> list[dict[str, Any]] | None:
    """Canonical input schema from the model itself: `feature_names_in_` (numbers) or
    an ONNX session's graph inputs; None when the model does not say."""
    get_inputs = getattr(model, "get_inputs", None)
    if callable(get_inputs) and hasattr(model, "run"):
        return [_onnx_feature(node) for node in get_inputs()]
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    return [{"name": str(name), "type": "number", "required": True} for name in names]


def _onnx_feature(node: Any) -> dict[str, Any]:
    shape = list(node.shape or [])
    per_row = shape[1:]
    scalar = all(isinstance(d, int) for d in per_row) and _product(per_row) == 1
    kind = ONNX_FEATURE_TYPES.get(str(node.type), "array") if scalar else "array"
    dims = ", ".join("N" if not isinstance(d, int) else str(d) for d in shape)
    return {
        "name": str(node.name),
        "type": kind,
        "required": True,
        "description": f"ONNX input {node.type} [{dims}]"[:500],
    }


def _product(values: list[int]) -> int:
    out = 1
    for value in values:
        out *= value
    return out
