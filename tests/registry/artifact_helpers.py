"""Builders for artifact tests: real skops/ONNX files and hostile payloads."""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np
import onnx
import skops.io as sio
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1], [0.1, 0.8], [0.8, 0.3]])
Y = np.array([0, 1, 0, 1, 0, 1])
SCHEMA = [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]


def fitted_logreg(feature_names: list[str] | None = None) -> LogisticRegression:
    model = LogisticRegression().fit(X, Y)
    if feature_names is not None:
        # What fitting on a DataFrame would record (pandas is not installed here).
        model.feature_names_in_ = np.array(feature_names, dtype=object)
    return model


def skops_bytes(obj: Any) -> bytes:
    return sio.dumps(obj)


def upload(data: bytes, name: str = "model.skops") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


class Sneaky:
    """Not a scikit-learn type: skops must not build it from an upload."""

    def __init__(self) -> None:
        self.payload = "anything"


class MarkerPayload:
    """Unpickling this creates `path` (a directory): proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def malicious_pickle(marker: str, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps(MarkerPayload(marker), protocol=protocol)


def onnx_add_model(*, external: bool = False) -> bytes:
    """Y = X + [10, 20] over a float tensor X of shape [N, 2]."""
    bias = numpy_helper.from_array(np.array([10.0, 20.0], dtype=np.float32), "bias")
    if external:
        bias.ClearField("raw_data")
        bias.data_location = TensorProto.EXTERNAL
        location = bias.external_data.add()
        location.key, location.value = "location", "../../etc/passwd"
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "bias"], ["Y"])],
        "add",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
        initializer=[bias],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    if not external:
        onnx.checker.check_model(model)
    return model.SerializeToString()


def zip_without_schema() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return buffer.getvalue()


def onnx_unknown_op_model() -> bytes:
    """Valid to the ONNX checker, but onnxruntime has no kernel for the op."""
    graph = helper.make_graph(
        [helper.make_node("Foo", ["X"], ["Y"], domain="com.example")],
        "unknown",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid("com.example", 1),
        ],
        ir_version=8,
    )
    return model.SerializeToString()
