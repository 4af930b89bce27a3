"""StorableJSONField and `storable` (apps/core/serializer_fields.py): what passes,
what is refused and under which path, and that a value the quick check passes skips
DRF's own check only when that check would pass it too."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest
from rest_framework import serializers

from apps.core.serializer_fields import StorableJSONField, storable


class Text(str):
    pass


NAN, INF = float("nan"), float("inf")
VALUES: dict[str, tuple[Any, bool, str | None]] = {
    # name: (value, nul allowed, the refusal's message or None when stored as is)
    "row": ({"a": 1, "b": 2.5, "c": "x", "d": [True, None]}, False, None),
    "int keys": ({1: "a", 2.5: "b", None: "c"}, True, None),
    "beyond 64 bits": ({"n": 2**70}, True, None),
    "nested NaN": (
        {"a": [1.0, NAN]},
        True,
        "Numbers must be finite (no infinity or NaN).",
    ),
    "infinity beside a null": (
        [None, -INF],
        True,
        "Numbers must be finite (no infinity or NaN).",
    ),
    "NUL": ({"a": "x\x00y"}, True, "Null characters are not allowed."),
    "NUL let through": ({"a": "x\x00y"}, False, None),
    "NUL key": ({"k\x00": 1}, True, "Null characters are not allowed."),
    "surrogate": (["\ud800"], False, "Surrogate characters are not allowed: U+D800."),
    "surrogate key": (
        {"\udfff": 1},
        True,
        "Surrogate characters are not allowed: U+DFFF.",
    ),
    "str subclass": ({"a": Text("x\x00")}, True, "Null characters are not allowed."),
    "a literal backslash-u": ({"a": "\\u0000"}, True, None),
    "deep": (json.loads("[" * 300 + "1" + "]" * 300), True, None),
}


@pytest.mark.parametrize(
    ("value", "nul", "message"), list(VALUES.values()), ids=list(VALUES)
)
def test_storable_refuses_what_postgresql_cannot_store(value, nul, message):
    if message is None:
        assert storable(value, nul=nul) is value
    else:
        with pytest.raises(serializers.ValidationError) as caught:
            storable(value, nul=nul)
        assert message in json.dumps(caught.value.detail)


class Body(serializers.Serializer):
    value = StorableJSONField(nul=False)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ({"a": [1, 2.5, "x", None]}, True),
        ({"a": "x\x00"}, True),  # NULs pass here: replaced when stored
        ({"a": math.nan}, False),
        ({"when": datetime.date(2026, 1, 1)}, False),  # DRF's own check: not JSON
        ({"s": {1, 2}}, False),
        ({"n": 2**70}, True),
    ],
)
def test_the_field_passes_only_json_values(value, valid):
    body = Body(data={"value": value})
    assert body.is_valid() is valid, body.errors
    if valid:
        assert body.validated_data["value"] is value
