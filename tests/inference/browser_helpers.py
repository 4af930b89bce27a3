"""Shared by the inference browser tests: a group with a provisioned log table,
rows written straight into it at chosen times, and a URL conf with the browser.

This module is also a URL conf: the tenant routes plus the `/inference/` pages and
the browser API when config/urls_tenants.py and config/api_urls.py do not include
them yet (`browser_wired`)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, include, path
from django_tenants.utils import schema_context

from config import api_urls, urls_tenants

__all__ = [
    "browser_wired",
    "logged_group",
    "uuid7_at",
    "write_row",
]


def _names(patterns: list[Any]) -> set[str]:
    found: set[str] = set()
    for p in patterns:
        if isinstance(p, URLPattern) and p.name:
            found.add(p.name)
        elif isinstance(p, URLResolver):
            found |= _names(p.url_patterns)
    return found


_API_WIRED = "group-inference-list" in _names(api_urls.urlpatterns)
_PAGES_WIRED = any(
    isinstance(p, URLResolver) and p.namespace == "inference"
    for p in urls_tenants.urlpatterns
)
_GROUPS_WIRED = any(
    isinstance(p, URLResolver) and p.namespace == "groups"
    for p in urls_tenants.urlpatterns
)

_extra: list[Any] = []
if not _API_WIRED:
    from apps.inference.api import browser_urls

    # First, so that the "api" namespace (reversed from the first include) has both.
    _extra.append(
        path(
            "api/v1/",
            include(([*browser_urls.urlpatterns, *api_urls.urlpatterns], "api")),
        )
    )
if not _PAGES_WIRED:
    _extra.append(path("inference/", include("apps.inference.page_urls")))
if not _GROUPS_WIRED:
    _extra.append(path("groups/", include("apps.groups.page_urls")))
urlpatterns = [*_extra, *urls_tenants.urlpatterns]
handler400 = urls_tenants.handler400
handler403 = urls_tenants.handler403
handler404 = urls_tenants.handler404
handler500 = urls_tenants.handler500


@pytest.fixture
def browser_wired(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__


def uuid7_at(moment: datetime) -> str:
    """A UUIDv7 whose time is `moment` (ms precision): the writer files the row at
    exactly that time, as it does for a live request."""
    millis = int(moment.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68) << 64 & (0xFFF << 64)
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def logged_group(schema: str, slug: str) -> Any:
    """A group whose inference table exists (as after its first activation)."""
    from apps.groups.services import group_create
    from apps.inference.services import inference_table_ensure

    with schema_context(schema):
        group = group_create(name=slug.title(), slug=slug, actor="test")
        inference_table_ensure(group=group)
        return type(group).objects.select_related("inference_table").get(pk=group.pk)


def write_row(schema: str, group: Any, moment: datetime, **fields: Any) -> str:
    """One row at `moment`; returns its request id."""
    from apps.inference.writer import log_write

    rid = uuid7_at(moment.astimezone(UTC))
    row = {
        "request_id": rid,
        "role": "champion",
        "status": "ok",
        "door": "rest",
        "requester": "api-key:test",
        "latency_ms": 10.0,
        "model_latency_ms": 8.0,
        "input": {"x": 1},
        "output": {"y": 0},
        **fields,
    }
    with schema_context(schema):
        log_write(group.pk, row)
    return rid
