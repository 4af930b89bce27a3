"""Base serializers shared by the apps' APIs."""

from __future__ import annotations

import threading
from typing import Any

from django.utils.functional import cached_property
from rest_framework import serializers

_built = threading.local()


# RequestBodySerializer (its notes are comments: a docstring would become the
# description of every request body in the OpenAPI schema).
#
# A serializer that only validates a request body, on a hot path (the prediction
# doors): its fields are built once per class and thread instead of being
# deep-copied for every instance, which is DRF's way and most of such a
# serializer's cost (a prediction's body 71 -> 41 us, a chat completion's
# 199 -> 43 us, an OIP inference request's 398 -> 200 us).
#
# The fields are bound to a blank instance of the class, so none of them may read
# the serializer's `context`, `instance` or `partial`; validation itself
# (`validate_<field>`, `validate`) runs on the instance as usual. A thread
# validates one body at a time, so no two validations share a field.
class RequestBodySerializer(serializers.Serializer):
    @cached_property
    def fields(self) -> Any:
        cache: dict[type, Any] = _built.__dict__.setdefault("fields", {})
        fields = cache.get(type(self))
        if fields is None:
            blank = type(self)()
            # DRF's own property on the blank instance (not this one: it would
            # come back here).
            fields = serializers.Serializer.fields.func(blank)  # type: ignore[attr-defined]
            cache[type(self)] = fields
        return fields
