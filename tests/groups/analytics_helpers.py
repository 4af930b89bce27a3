"""Shared by the analytics tests: inference rows written at chosen times, raw SQL over
a group's table, and a URL conf with the analytics API and page routes (used while
config/ does not include them yet)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any

from django.db import connection
from django.urls import URLResolver, include, path
from django_tenants.utils import schema_context

from apps.inference.writer import feedback_write, log_write
from config import api_urls, urls_tenants

_API_WIRED = any(
    getattr(p, "name", "") == "group-comparison"
    or (isinstance(p, URLResolver) and "analytics" in str(p.urlconf_name))
    for p in api_urls.urlpatterns
)
_PAGES_WIRED = any(
    isinstance(p, URLResolver) and p.namespace == "analytics"
    for p in urls_tenants.urlpatterns
)
_GROUP_PAGES_WIRED = any(
    isinstance(p, URLResolver) and p.namespace == "groups"
    for p in urls_tenants.urlpatterns
)
urlpatterns = [
    *(
        []
        if _API_WIRED
        else [path("api/v1/", include("apps.groups.api.analytics_urls"))]
    ),
    *(
        []
        if _PAGES_WIRED
        else [path("groups/", include("apps.groups.analytics_page_urls"))]
    ),
    *(
        []
        if _GROUP_PAGES_WIRED
        else [path("groups/", include("apps.groups.page_urls"))]
    ),
    *urls_tenants.urlpatterns,
]
handler400 = urls_tenants.handler400
handler403 = urls_tenants.handler403
handler404 = urls_tenants.handler404
handler500 = urls_tenants.handler500


def uuid7_at(moment: datetime) -> str:
    """A UUIDv7 whose time is `moment` (millisecond precision)."""
    millis = int(moment.timestamp() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def write_row(
    group_id: int,
    *,
    at: datetime,
    member_id: int,
    version_id: int,
    role: str,
    latency_ms: float,
    prediction: Any = 1,
    status: str = "ok",
    label: Any = None,
    value: Any = None,
    schema: str = "alpha",
) -> str:
    """One inference row (and its feedback when `label`/`value` is given)."""
    request_id = uuid7_at(at)
    output = (
        {"prediction": prediction, "probabilities": {"0": 0.3, "1": 0.7}}
        if status == "ok"
        else None
    )
    with schema_context(schema):
        log_write(
            group_id,
            {
                "request_id": request_id,
                "member_id": member_id,
                "version_id": version_id,
                "role": role,
                "status": status,
                "latency_ms": latency_ms,
                "model_latency_ms": latency_ms / 2,
                "output": output,
                "input": {"x": 1},
            },
        )
        if label is not None or value is not None:
            item: dict[str, Any] = {"request_id": request_id}
            if label is not None:
                item["label"] = label
            if value is not None:
                item["value"] = value
            feedback_write(group_id, [item])
    return request_id


def raw_member_numbers(
    group_id: int, since: datetime, until: datetime, schema: str = "alpha"
) -> dict[int, dict[str, Any]]:
    """Per member over [since, until), straight from the inference table."""
    with schema_context(schema), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT member_id, count(*), count(*) FILTER (WHERE status <> 'ok'), "
            f"count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label'), "
            f"count(*) FILTER (WHERE status = 'ok' AND feedback ? 'label' "
            f"AND output->>'prediction' = feedback->>'label'), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            f"avg(latency_ms) "
            f"FROM inference_log_g{int(group_id)} WHERE ts >= %s AND ts < %s "
            f"GROUP BY member_id",
            [since, until],
        )
        return {
            row[0]: {
                "requests": row[1],
                "errors": row[2],
                "labelled": row[3],
                "correct": row[4],
                "p95": row[5],
                "p50": row[6],
                "mean": row[7],
            }
            for row in cursor.fetchall()
        }


def raw_hourly(
    group_id: int, since: datetime, until: datetime, schema: str = "alpha"
) -> list[tuple[datetime, int, int]]:
    """(hour, member, requests) from the inference table."""
    with schema_context(schema), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT date_trunc('hour', ts), member_id, count(*) "
            f"FROM inference_log_g{int(group_id)} WHERE ts >= %s AND ts < %s "
            f"GROUP BY 1, 2 ORDER BY 1, 2",
            [since, until],
        )
        return [(h, m, n) for h, m, n in cursor.fetchall()]


def members_of(group: Any, schema: str = "alpha") -> dict[str, Any]:
    """{"champion": Membership, "challenger": Membership}."""
    with schema_context(schema):
        return {m.role: m for m in group.members.filter(active=True)}


def loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
