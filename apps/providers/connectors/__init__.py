"""Connector registry: kinds map to dotted paths in settings.PROVIDER_CONNECTORS and
are imported on first use, like Django's cache and email backends."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from apps.providers.connectors.base import Connector


@cache
def _load(path: str) -> type[Connector]:
    cls = import_string(path)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"{path} is not a Connector")
    return cls


def connector_class(kind: str) -> type[Connector]:
    try:
        path = settings.PROVIDER_CONNECTORS[kind]
    except KeyError as exc:
        raise KeyError(f"no connector for provider kind '{kind}'") from exc
    return _load(path)


def known_kinds() -> list[str]:
    return list(settings.PROVIDER_CONNECTORS)
