"""RequestBodySerializer: fields built once per class and thread, validation as
DRF's own (apps/core/serializers.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rest_framework import serializers

from apps.core.serializers import RequestBodySerializer
from apps.groups.api.oip import InferRequestSerializer
from apps.groups.api.openai_compat import ChatRequestSerializer
from apps.groups.api.serializers import FeedbackInSerializer, PredictInSerializer


class _Rules:
    def validate_count(self, value: int) -> int:
        if value == 13:
            raise serializers.ValidationError(f"not {value}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("flag") and not attrs.get("items"):
            raise serializers.ValidationError({"items": "needed with flag"})
        return attrs


class PlainItem(serializers.Serializer):
    name = serializers.CharField(max_length=5)


class Item(RequestBodySerializer):
    name = serializers.CharField(max_length=5)


class PlainBody(_Rules, serializers.Serializer):  # DRF's own way: the oracle
    count = serializers.IntegerField(min_value=1)
    items = PlainItem(many=True, required=False)
    flag = serializers.BooleanField(default=False)


class Body(_Rules, RequestBodySerializer):
    count = serializers.IntegerField(min_value=1)
    items = Item(many=True, required=False)
    flag = serializers.BooleanField(default=False)


def _result(cls: type, data: Any) -> Any:
    body = cls(data=data)
    return body.validated_data if body.is_valid() else {"errors": body.errors}


BODIES = [
    {"count": 2, "items": [{"name": "a"}]},
    {"count": 0},
    {"count": 13},
    {"count": 1, "items": [{"name": "toolong"}, {"name": "ok"}, {}]},
    {"count": 1, "flag": True},
    {"count": "x", "items": "no"},
    {},
    [],
    {"count": 3},
]


def test_fields_are_built_once_per_thread_and_validate_as_drf_does():
    assert Body(data={}).fields is Body(data={}).fields
    assert PlainBody(data={}).fields is not PlainBody(data={}).fields
    # One after the other on the shared fields, each body gets its own result.
    for data in BODIES:
        assert _result(Body, data) == _result(PlainBody, data), data


def test_threads_validate_at_once_on_fields_of_their_own():
    seen: dict[int, Any] = {}
    wrong: list[Any] = []
    start = threading.Barrier(4)

    def work(n: int) -> None:
        start.wait()
        seen[n] = Body(data={}).fields
        for i in range(300):
            count = n * 1000 + i + 100
            got = _result(Body, {"count": count, "items": [{"name": str(n)}]})
            if got != {"count": count, "items": [{"name": str(n)}], "flag": False}:
                wrong.append(got)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not wrong
    assert len({id(fields) for fields in seen.values()}) == 4


def test_fields_keep_no_request_of_their_own():
    body = Body(data={"count": 5})
    assert body.is_valid()
    root = body.fields["count"].root
    assert root is not body and not hasattr(root, "initial_data")


def test_what_a_shared_field_cannot_honour_is_refused():
    for kwargs in ({"context": {"request": object()}}, {"partial": True}):
        with pytest.raises(TypeError, match="request body only"):
            Body(data={}, **kwargs)
    with pytest.raises(TypeError, match="request body only"):
        Body(object())
    with pytest.raises(TypeError, match="mutable default"):

        class Shared(RequestBodySerializer):
            tags = serializers.ListField(default=[])


REAL_BODIES = {
    PredictInSerializer: [
        {"inputs": {"a": 1.5}, "routing_key": "k"},
        {"inputs": [{"a": 1}], "explain": True},
        {"inputs": 3},
        {"inputs": {"a": "\ud800"}},
        {"routing_key": "x" * 201},
        {},
    ],
    FeedbackInSerializer: [
        {"request_id": "r", "label": 1},
        {"items": [{"request_id": "r", "value": 0.5}, {"request_id": "s"}]},
        {"items": "no"},
        {"label": float("nan")},
    ],
    ChatRequestSerializer: [
        {"model": "g", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "g", "messages": [], "stream": True, "temperature": 3},
        {"model": "g", "messages": ["x"], "max_tokens": 0, "stop": ["\x00"]},
        {"messages": [{"role": "user", "content": "hi"}], "top_p": -1},
    ],
    InferRequestSerializer: [
        {
            "inputs": [
                {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}
            ]
        },
        {"inputs": [{"name": "x", "shape": [-1], "datatype": "NOPE", "data": "no"}]},
        {"inputs": [], "id": "y" * 201},
        {"parameters": [], "outputs": [{}]},
    ],
}


def test_the_doors_serializers_answer_as_drfs_own_way(monkeypatch):
    """Every body of every door: the same validated data or the same errors as with
    DRF's per-instance fields, and DRF looking at every field."""
    ours = {
        cls: [_result(cls, data) for data in bodies]
        for cls, bodies in REAL_BODIES.items()
    }
    for name in ("fields", "_writable_fields", "to_internal_value"):
        monkeypatch.setattr(
            RequestBodySerializer, name, serializers.Serializer.__dict__[name]
        )
    for cls, bodies in REAL_BODIES.items():
        assert cls(data={}).fields is not cls(data={}).fields  # DRF's way now
        assert [_result(cls, data) for data in bodies] == ours[cls], cls.__name__


def test_an_optional_field_a_body_leaves_out_is_not_looked_at(monkeypatch):
    looked: list[str] = []
    real = serializers.Field.validate_empty_values

    def spy(self, data):
        looked.append(self.field_name)
        return real(self, data)

    monkeypatch.setattr(serializers.Field, "validate_empty_values", spy)
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
    assert _result(ChatRequestSerializer, body)["model"] == "g"
    # model, messages (and its item, a child without a name of its own), stream
    # (which has a default): not the ten optional fields left out
    assert set(looked) - {"", None} == {"messages", "model", "stream"}
    looked.clear()
    assert "errors" in _result(ChatRequestSerializer, {"messages": []})
    assert "model" in looked  # a required field left out is still an error
