"""Base serializers shared by the apps' APIs."""

from __future__ import annotations

import threading
from typing import Any

from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.fields import empty

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
# The fields are bound to a blank instance of the class (bound to the first real
# one, they would keep its body alive and name it as their root), so none of them
# may read the serializer's `context`, `instance` or `partial`: passing any of
# them is refused, and so is a mutable default, which requests would share.
# Validation itself (`validate_<field>`, `validate`) runs on the instance as usual;
# DRF keeps no state of a validation on its fields, so one thread may validate
# bodies one inside another.
#
# An optional field without a default that a body (a plain dict) leaves out is not
# looked at: DRF would find it empty and skip it by raising SkipField, one exception
# per absent field (a chat completion's body leaves out ten of its fourteen).
class RequestBodySerializer(serializers.Serializer):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, declared in getattr(cls, "_declared_fields", {}).items():
            if isinstance(declared.default, list | dict | set):
                raise TypeError(
                    f"{cls.__name__}.{name}: a mutable default would be shared by "
                    "every request; give a callable (e.g. default=list)."
                )

    def __init__(self, instance: Any = None, data: Any = empty, **kwargs: Any) -> None:
        if instance is not None or kwargs.get("partial") or kwargs.get("context"):
            raise TypeError(
                f"{type(self).__name__} validates a request body only: no instance, "
                "partial or context."
            )
        super().__init__(instance, data, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        self._given = data if type(data) is dict else None
        try:
            return super().to_internal_value(data)
        finally:
            self._given = None

    @property
    def _writable_fields(self) -> Any:
        given = getattr(self, "_given", None)
        for field in self.fields.values():
            if field.read_only:
                continue
            if (
                given is not None
                and field.field_name not in given
                and not field.required
                and field.default is empty
            ):
                continue  # DRF: get_value -> empty -> SkipField
            yield field

    @cached_property
    def fields(self) -> Any:
        cache: dict[type, Any] = _built.__dict__.setdefault("fields", {})
        fields = cache.get(type(self))
        if fields is None:
            blank = type(self)()
            fields = serializers.Serializer.fields.func(blank)  # type: ignore[attr-defined]
            cache[type(self)] = fields
        return fields
