"""`/api/v1/groups/{slug}/inferences/`: a group's inference log, filtered and
keyset-paginated, one inference with its explanation and audit events, and the
current filter as CSV. People with the viewer role read it; machines need a
`manage` key (a `predict` key reaches the prediction doors only)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.roles import Role, Scope
from apps.groups.models import ModelGroup
from apps.inference import selectors
from apps.inference.api.browser_serializers import (
    InferenceDetailSerializer,
    InferenceListSerializer,
)


def _q(name: str, kind: Any, description: str, **extra: Any) -> OpenApiParameter:
    return OpenApiParameter(
        name, kind, OpenApiParameter.QUERY, description=description, **extra
    )


FILTER_PARAMETERS = [
    _q(
        "since",
        OpenApiTypes.STR,
        description="ISO date or date-time (UTC unless an offset is given). "
        "Default: 7 days before `until` (or now); for a UUIDv7 `request_id`, "
        "that id's own time.",
    ),
    _q(
        "until",
        OpenApiTypes.STR,
        description="ISO date or date-time, exclusive; a bare date means the end "
        "of that day. Default: none.",
    ),
    _q("member_id", OpenApiTypes.INT, description="Membership id."),
    _q("version_id", OpenApiTypes.INT, description="Version id."),
    _q("role", OpenApiTypes.STR, enum=list(selectors.ROLES), description="Role."),
    _q("status", OpenApiTypes.STR, description="Row status, e.g. `ok`, `error`."),
    _q(
        "min_latency_ms",
        OpenApiTypes.NUMBER,
        description="Total latency at least this many milliseconds.",
    ),
    _q("has_feedback", OpenApiTypes.BOOL, description="With / without feedback."),
    _q(
        "has_explanation",
        OpenApiTypes.BOOL,
        description="With / without SHAP values.",
    ),
    _q(
        "request_id",
        OpenApiTypes.UUID,
        description="The row with this id and the rows pointing at it: its shadow "
        "copies, made within an hour, carry it as `client_request_id`.",
    ),
    _q(
        "client_request_id",
        OpenApiTypes.STR,
        description="The caller's own `X-Request-ID` when it was not a UUIDv7.",
    ),
    _q("routing_key", OpenApiTypes.STR, description="Exact routing key."),
    _q(
        "text",
        OpenApiTypes.STR,
        description="Case-insensitive substring of the input or output JSON "
        "(searched within the time range only).",
    ),
    _q("shadow", OpenApiTypes.BOOL, description="Shadow copies only / none."),
]
INVALID = OpenApiResponse(
    description="A bad filter (error envelope, `code: invalid_filter`, `fields` "
    "naming it)."
)
NOT_FOUND = OpenApiResponse(description="No such group (or row) here.")
CSV_COLUMNS = list(selectors.COLUMNS)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def group_for(slug: str) -> ModelGroup:
    return get_object_or_404(
        ModelGroup.objects.select_related("inference_table"), slug=slug
    )


def csv_cell(value: Any) -> Any:
    """One CSV cell. Text a spreadsheet would run as a formula gets a leading
    quote (CSV injection); numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    """csv.writer writes into this; each row's text is handed straight on."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in rows:
        yield writer.writerow([csv_cell(row.get(c)) for c in CSV_COLUMNS])


class CSVRenderer(renderers.BaseRenderer):
    """Lets clients ask with `Accept: text/csv`; errors still leave as JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        return renderers.JSONRenderer().render(data)


class InferenceListView(APIView):
    """The group's inferences, newest first, filtered; keyset pages via `cursor`."""

    read_role = Role.VIEWER
    key_scopes = (Scope.MANAGE,)

    @extend_schema(
        operation_id="groups_inferences_list",
        parameters=[
            *FILTER_PARAMETERS,
            _q(
                "cursor",
                OpenApiTypes.STR,
                description="`next` of the previous page (same filters).",
            ),
            _q(
                "limit",
                OpenApiTypes.INT,
                description=f"Rows per page, 1..{selectors.MAX_LIMIT} "
                f"(default {selectors.DEFAULT_LIMIT}).",
            ),
        ],
        responses={200: InferenceListSerializer, 400: INVALID, 404: NOT_FOUND},
        description="Rows without their payloads (see the detail for input, output "
        "and explanation). A group that was never active has no rows.",
    )
    def get(self, request: Request, slug: str) -> Response:
        group = group_for(slug)
        params = request.query_params
        limit = selectors.inference_limit_parse(params.get("limit"))
        page = selectors.inference_list(
            group=group, filters=params, after=params.get("cursor"), limit=limit
        )
        applied = page.filters.as_query()
        next_url = None
        if page.next_cursor:
            query = urlencode({**applied, "limit": limit, "cursor": page.next_cursor})
            next_url = request.build_absolute_uri(f"{request.path}?{query}")
        body = {
            "results": page.rows,
            "next": page.next_cursor,
            "next_url": next_url,
            "filters": applied,
        }
        return Response(InferenceListSerializer(body).data)


class InferenceExportView(APIView):
    """The current filter as CSV, newest first, streamed."""

    read_role = Role.VIEWER
    key_scopes = (Scope.MANAGE,)
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="groups_inferences_export",
        parameters=FILTER_PARAMETERS,
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            400: INVALID,
            404: NOT_FOUND,
        },
        description=f"Every row of the filter with its payloads as JSON text, at "
        f"most {selectors.EXPORT_MAX_ROWS:,} (the newest; narrow the time range "
        "for the rest). Cells that a spreadsheet would read as a formula start "
        "with a quote.",
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        group = group_for(slug)
        # Made now, so a bad filter is a 400 before anything is streamed.
        rows = selectors.inference_export_rows(
            group=group, filters=request.query_params
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        response = StreamingHttpResponse(
            csv_lines(rows), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="inferences-{group.slug}-{stamp}.csv"'
        )
        response["X-Export-Limit"] = str(selectors.EXPORT_MAX_ROWS)
        return response


class InferenceDetailView(APIView):
    """One inference with its payloads, explanation, audit events and related rows."""

    read_role = Role.VIEWER
    key_scopes = (Scope.MANAGE,)

    @extend_schema(
        operation_id="groups_inferences_retrieve",
        responses={200: InferenceDetailSerializer, 404: NOT_FOUND},
        description="`request_id` is the id the predict call answered with (also "
        "its `X-Request-ID` header). The audit events are those recorded under "
        "this id or the caller's own `X-Request-ID`.",
    )
    def get(self, request: Request, slug: str, request_id: str) -> Response:
        group = group_for(slug)
        row = selectors.inference_get(group=group, request_id=request_id)
        body = {
            **row,
            "has_explanation": row.get("explanation") is not None,
            "audit_events": selectors.audit_events_for(row=row),
            "related": selectors.inference_related(group=group, row=row),
        }
        return Response(InferenceDetailSerializer(body).data)
