"""Serializer fields shared by the apps' APIs."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.db import models
from rest_framework import serializers

# A lone UTF-16 surrogate: Python's json reads "\ud800" into a str that UTF-8 (and so
# PostgreSQL) cannot encode.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _problem(value: Any, *, nul: bool) -> str | None:
    """What PostgreSQL could not store in this one value (not looking inside it)."""
    if isinstance(value, str):
        if nul and "\x00" in value:
            return "Null characters are not allowed."
        found = _SURROGATE.search(value)
        if found:
            return f"Surrogate characters are not allowed: U+{ord(found.group()):X}."
    elif isinstance(value, float) and not math.isfinite(value):
        return "Numbers must be finite (no infinity or NaN)."
    return None


def _refuse(value: Any, *, nul: bool, path: str = "") -> None:
    """Raise, under the dotted path of the first value that cannot be stored (the
    error envelope names it `<field>.<path>`; a key is named by its parent)."""
    problem = _problem(value, nul=nul)
    if problem:
        raise serializers.ValidationError({path: [problem]} if path else problem)
    if isinstance(value, dict):
        for key, item in value.items():
            if _problem(key, nul=nul):
                _refuse(key, nul=nul, path=path)
            _refuse(item, nul=nul, path=f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse(item, nul=nul, path=f"{path}.{index}" if path else str(index))


def storable(value: Any, *, nul: bool = True) -> Any:
    """A JSON value PostgreSQL can store: no NUL character (unless `nul` is False, for
    values whose NULs are replaced when stored, e.g. a prediction's logged input), no
    lone surrogate, only finite numbers, anywhere in it, keys included."""
    if not _plainly_storable(value, nul=nul):
        _refuse(value, nul=nul)  # which problem, and where
    return value


def _plainly_storable(value: Any, *, nul: bool) -> bool:
    """Whether the value is JSON's own types only, all of them storable: the common
    case, at C speed (prediction inputs pass here). False says only that `_refuse`
    must look. (Not through orjson: encoding a large array, it holds some 60 times the
    text's size at its peak.)"""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return False
    return not nul or "\\u0000" not in text


class StorableJSONField(serializers.JSONField):
    """A JSON value that PostgreSQL can store (see `storable`); `nul=False` lets NUL
    characters through, for values whose NULs are replaced when stored."""

    def __init__(self, *, nul: bool = True, **kwargs: Any) -> None:
        self.nul = nul
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if self.binary or getattr(data, "is_json_string", False):
            storable(data, nul=self.nul)  # the text itself
        elif _plainly_storable(data, nul=self.nul):
            # It passes DRF's own check too (json.dumps without NaN): not run again.
            return data
        else:
            # Which problem, and where: before DRF's own check, which calls
            # infinity "not valid JSON".
            _refuse(data, nul=self.nul)
        value = super().to_internal_value(data)
        if value is not data:  # parsed from text (a form field's JSON)
            storable(value, nul=self.nul)
        return value


class StorableDictField(serializers.DictField):
    """A JSON object that PostgreSQL can store (see `storable` and `nul` above)."""

    def __init__(self, *, nul: bool = True, **kwargs: Any) -> None:
        self.nul = nul
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[Any, Any]:
        value = super().to_internal_value(data)
        return storable(value, nul=self.nul)  # type: ignore[no-any-return]


# A ModelSerializer's `serializer_field_mapping` whose model JSONFields are
# StorableJSONFields: refused under their own name, not as a database error.
STORABLE_FIELD_MAPPING = {
    **serializers.ModelSerializer.serializer_field_mapping,
    models.JSONField: StorableJSONField,
}
