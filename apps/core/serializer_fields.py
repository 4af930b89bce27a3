"""Serializer fields shared by the apps' APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


def without_nul(value: Any) -> Any:
    """PostgreSQL's jsonb cannot store U+0000: refuse it anywhere in a JSON value
    (DRF's CharField says the same of its own text)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            without_nul(key)
            without_nul(item)
    elif isinstance(value, list):
        for item in value:
            without_nul(item)
    return value


class StorableJSONField(serializers.JSONField):
    """A JSON value that PostgreSQL can store (no NUL character anywhere)."""

    def to_internal_value(self, data: Any) -> Any:
        return without_nul(super().to_internal_value(data))
