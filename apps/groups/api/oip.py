"""Open Inference Protocol v2 (KServe / Triton / Seldon REST): the same path behind it.

Inputs arrive as named tensors: one per feature (shape [N] or [N, 1]), or one tensor of
shape [N, F] with the features in the version's schema order. Outputs: `predict`
(shape [N]) and, for classifiers, `predict_proba` (shape [N, C], FP64)."""

from __future__ import annotations

from typing import Any

from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role, Scope
from apps.accounts.throttling import PredictRateThrottle
from apps.core.doors import json_answer, json_body
from apps.core.errors import ApplicationError
from apps.core.serializer_fields import StorableDictField, StorableJSONField
from apps.core.serializers import RequestBodySerializer
from apps.groups.api.views import requester_of
from apps.groups.models import ModelGroup
from apps.groups.serving import group_route, predict

DATATYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
}
SCHEMA_TYPES = {
    "number": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
    "categorical": "BYTES",
    "text": "BYTES",
}


class TensorSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    shape = serializers.ListField(
        child=serializers.IntegerField(min_value=0), max_length=8
    )
    datatype = serializers.ChoiceField(choices=sorted(DATATYPES))
    parameters = StorableDictField(nul=False, required=False)
    # NUL characters pass: the log stores U+FFFD in their place (apps.inference.writer).
    data = serializers.ListField(child=StorableJSONField(nul=False))


class InferRequestSerializer(RequestBodySerializer):
    id = serializers.CharField(max_length=200, required=False)
    parameters = StorableDictField(nul=False, required=False)
    inputs = TensorSerializer(many=True, min_length=1)
    outputs = serializers.ListField(child=StorableDictField(nul=False), required=False)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _count(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def tensors_to_rows(
    schema: list[dict[str, Any]], tensors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    names = [f["name"] for f in schema]
    fields: dict[str, list[str]] = {}
    for index, tensor in enumerate(tensors):
        values = _flatten(tensor["data"])
        if len(values) != _count(tensor["shape"]):
            fields[f"inputs.{index}.data"] = [
                f"{len(values)} values do not fill shape {tensor['shape']}"
            ]
        tensor["_values"] = values
    if fields:
        raise ApplicationError(
            "Tensor data and shape disagree.", code="invalid", fields=fields
        )
    by_name = {t["name"]: t for t in tensors}
    if set(by_name) & set(names):
        missing = [n for n in names if n not in by_name]
        extra = [n for n in by_name if n not in names]
        if missing or extra:
            raise ApplicationError(
                "Input tensors must be the model's features.",
                code="invalid_inputs",
                fields={
                    **{f"inputs.{n}": ["missing"] for n in missing},
                    **{f"inputs.{n}": ["not a feature of this model"] for n in extra},
                },
            )
        counts = {len(by_name[n]["_values"]) for n in names}
        if len(counts) != 1:
            raise ApplicationError(
                "Feature tensors have different lengths.",
                code="invalid_inputs",
                fields={"inputs": [str(counts)]},
            )
        rows = counts.pop()
        return [{n: by_name[n]["_values"][i] for n in names} for i in range(rows)]
    if (
        len(tensors) == 1
        and len(tensors[0]["shape"]) == 2
        and tensors[0]["shape"][1] == len(names)
    ):
        values = tensors[0]["_values"]
        width = len(names)
        return [
            dict(zip(names, values[i : i + width], strict=True))
            for i in range(0, len(values), width)
        ]
    raise ApplicationError(
        f"Send one tensor per feature ({', '.join(names)}) or one tensor of shape "
        f"[N, {len(names)}].",
        code="invalid_inputs",
        fields={"inputs": [f"expected features {names}"]},
    )


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def outputs_to_tensors(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    predictions = [o["prediction"] for o in outputs]
    tensors: list[dict[str, Any]] = [
        {
            "name": "predict",
            "shape": [len(predictions)],
            "datatype": _datatype(predictions),
            "data": predictions,
        }
    ]
    if outputs and "probabilities" in outputs[0]:
        classes = list(outputs[0]["probabilities"])
        flat = [o["probabilities"][c] for o in outputs for c in classes]
        tensors.append(
            {
                "name": "predict_proba",
                "shape": [len(outputs), len(classes)],
                "datatype": "FP64",
                "data": flat,
                "parameters": {"classes": classes},
            }
        )
    return tensors


class ServerReadyView(APIView):
    """`GET /v2/health/ready` and `/v2/health/live`: the server answers."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        responses=inline_serializer("OipReady", {"ready": serializers.BooleanField()})
    )
    def get(self, request: Request) -> Response:
        return Response({"ready": True, "live": True})


class ServerMetadataView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        responses=inline_serializer(
            "OipServer",
            {
                "name": serializers.CharField(),
                "version": serializers.CharField(),
                "extensions": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        return Response({"name": "modelhub", "version": "1", "extensions": []})


class ModelMetadataView(APIView):
    """`GET /v2/models/{slug}`: the champion's inputs as tensors."""

    key_scopes = (Scope.PREDICT, Scope.MANAGE)
    read_role = Role.VIEWER

    @extend_schema(
        responses=inline_serializer(
            "OipModel",
            {
                "name": serializers.CharField(),
                "versions": serializers.ListField(child=serializers.CharField()),
                "platform": serializers.CharField(),
                "inputs": serializers.ListField(child=serializers.DictField()),
                "outputs": serializers.ListField(child=serializers.DictField()),
            },
        )
    )
    def get(self, request: Request, slug: str, version: str | None = None) -> Response:
        get_object_or_404(ModelGroup, slug=slug)
        route = group_route(slug)
        champion = next((m for m in route.members if m.role == "champion"), None)
        schema = route.versions[champion.version_id].input_schema if champion else []
        return Response(
            {
                "name": slug,
                "versions": sorted({str(v.number) for v in route.versions.values()}),
                "platform": "modelhub",
                "inputs": [
                    {
                        "name": f["name"],
                        "datatype": SCHEMA_TYPES.get(f["type"], "BYTES"),
                        "shape": [-1],
                    }
                    for f in schema
                ],
                "outputs": [
                    {
                        "name": "predict",
                        "shape": [-1],
                        "datatype": SCHEMA_TYPES.get(
                            (
                                route.versions[champion.version_id].output_schema
                                if champion
                                else {}
                            ).get("type", ""),
                            "FP64",
                        ),
                    }
                ],
            }
        )


class ModelReadyView(APIView):
    key_scopes = (Scope.PREDICT, Scope.MANAGE)
    read_role = Role.VIEWER

    @extend_schema(
        responses=inline_serializer(
            "OipModelReady",
            {"name": serializers.CharField(), "ready": serializers.BooleanField()},
        )
    )
    def get(self, request: Request, slug: str, version: str | None = None) -> Response:
        group = get_object_or_404(ModelGroup, slug=slug)
        ready = group.status == ModelGroup.Status.ACTIVE
        return Response({"name": slug, "ready": ready}, status=200 if ready else 400)


class InferView(APIView):
    """`POST /v2/models/{slug}/infer`."""

    key_scopes = (Scope.PREDICT, Scope.MANAGE)
    write_role = Role.VIEWER
    throttle_classes = [PredictRateThrottle]

    @extend_schema(
        request=InferRequestSerializer,
        responses=inline_serializer(
            "OipInfer",
            {
                "model_name": serializers.CharField(),
                "model_version": serializers.CharField(),
                "id": serializers.CharField(),
                "parameters": serializers.DictField(),
                "outputs": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def post(
        self, request: Request, slug: str, version: str | None = None
    ) -> HttpResponseBase:
        payload = InferRequestSerializer(data=json_body(request))
        payload.is_valid(raise_exception=True)
        route = group_route(slug)
        if route.is_llm:
            raise ApplicationError(
                "This group serves language models: use /openai/v1/chat/completions.",
                code="wrong_door",
                status_code=400,
            )
        champion = next((m for m in route.members if m.role == "champion"), None)
        if champion is None:
            raise ApplicationError(
                "The group has no champion.", code="no_members", status_code=409
            )
        schema = route.versions[champion.version_id].input_schema
        rows = tensors_to_rows(
            schema, [dict(t) for t in payload.validated_data["inputs"]]
        )
        result = predict(
            slug=slug,
            inputs=rows,
            requester=requester_of(request),
            door="oip",
            client_request_id=payload.validated_data.get("id"),
            request_id=request.request_id,  # type: ignore[attr-defined]
            explain=bool(
                (payload.validated_data.get("parameters") or {}).get("explain")
            ),
        )
        parameters: dict[str, Any] = {
            "request_id": result.request_id,
            "role": result.member.role,
            "model": result.version.model_name,
        }
        if result.explanation is not None:
            parameters["explanation"] = result.explanation
        elif result.explanation_error:
            parameters["explanation_error"] = result.explanation_error
        return json_answer(
            request,
            {
                "model_name": slug,
                "model_version": str(result.version.number),
                "id": payload.validated_data.get("id") or result.request_id,
                "parameters": parameters,
                "outputs": outputs_to_tensors(result.outputs),
            },
        )
