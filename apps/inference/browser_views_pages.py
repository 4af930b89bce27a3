"""`/inference/` pages: choose a group, browse its inference log (filters in the
query string, keyset "Older" pages, CSV export of the filter), and one inference
with its payloads, timings, caller, feedback, audit events and SHAP chart.
Everyone with a role reads; nothing here writes."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError, NotFoundError
from apps.groups.models import Membership, ModelGroup
from apps.inference import charts, selectors
from apps.registry.models import ModelVersion

PAGE_SIZE = 50
STATUSES = ("ok", "error")


def _url(name: str, *args: Any) -> str | None:
    """A URL that may not be wired yet (the page hides the link then)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _groups() -> Any:
    return ModelGroup.objects.select_related("inference_table").order_by("name")


def _version_labels(ids: set[int]) -> dict[int, dict[str, Any]]:
    versions = ModelVersion.objects.select_related("model").filter(pk__in=ids)
    return {
        v.pk: {"label": str(v), "url": _url("registry:model-detail", v.model.slug)}
        for v in versions
    }


def _find_by_id(value: str) -> tuple[ModelGroup, str] | None:
    """The group and row a request id names, searching every logged group: a UUID is
    a row's own id; anything else a caller's X-Request-ID (last 7 days)."""
    try:
        rid: uuid.UUID | None = uuid.UUID(value)
    except ValueError:
        rid = None
    for group in _groups():
        if not selectors.has_log(group):
            continue
        if rid is not None:
            try:
                # Not waiting for the spool in every group: only one holds it.
                row = selectors.inference_get(
                    group=group, request_id=str(rid), wait=False
                )
            except NotFoundError:
                continue
            return group, str(row["request_id"])
        page = selectors.inference_list(
            group=group, filters={"client_request_id": value}, limit=1
        )
        if page.rows:
            return group, str(page.rows[0]["request_id"])
    return None


@role_required(read=Role.VIEWER)
def browser_index(request: HttpRequest) -> HttpResponse:
    """Choose a group (or go straight to the only one); find a request by its id."""
    groups = list(_groups())
    search = (request.GET.get("request_id") or "").strip()
    error = None
    status = 200
    if search:
        try:
            selectors.inference_filters_parse(_id_filter(search))
        except ApplicationError as exc:
            error, status = exc.message, 400
        else:
            found = _find_by_id(search)
            if found is not None:
                return redirect("inference:detail", found[0].slug, found[1])
            error, status = f"No group logged an inference with the id “{search}”.", 404
    elif len(groups) == 1:
        return redirect("inference:group", groups[0].slug)
    context = {
        "groups": groups,
        "search": search,
        "error": error,
        "create_url": _url("groups:group-create"),
    }
    return render(request, "inference/browser_index.html", context, status=status)


def _id_filter(value: str) -> dict[str, str]:
    """A request id typed into the search box: a UUID is a row's id; an id of the
    shape apps.core.context accepts is the caller's own X-Request-ID."""
    try:
        uuid.UUID(value)
    except ValueError:
        if selectors.CLIENT_ID_RE.match(value):
            return {"client_request_id": value}
    return {"request_id": value}


def _raw_filters(query: QueryDict) -> dict[str, str]:
    """The non-empty filters as typed (the search box's id translated)."""
    raw = {
        name: query.get(name, "").strip()
        for name in selectors.FILTER_NAMES
        if query.get(name, "").strip()
    }
    if "request_id" in raw:
        typed = _id_filter(raw.pop("request_id"))
        raw = {**typed, **raw}
    return raw


def _member_choices(group: ModelGroup) -> list[dict[str, Any]]:
    members = Membership.objects.filter(group=group).select_related("version__model")
    return [
        {
            "id": m.pk,
            "version_id": m.version_id,
            "label": f"{m.role} · {m.version}{'' if m.active else ' (removed)'}",
            "version_label": str(m.version),
        }
        for m in sorted(members, key=lambda m: (not m.active, m.role, m.pk))
    ]


def _form_time(value: Any) -> str:
    """A filter's time as a datetime-local input shows it (UTC, the site's zone)."""
    if value is None:
        return ""
    return str(value.strftime("%Y-%m-%dT%H:%M:%S"))


@role_required(read=Role.VIEWER)
def browser(request: HttpRequest, slug: str) -> HttpResponse:
    """A group's inferences, newest first, filtered by the query string."""
    group = get_object_or_404(_groups(), slug=slug)
    raw = _raw_filters(request.GET)
    cursor = request.GET.get("cursor") or None
    if set(raw) == {"request_id"} and not cursor and selectors.has_log(group):
        # A request id pasted from a response header: straight to its page.
        try:
            row = selectors.inference_get(group=group, request_id=raw["request_id"])
        except NotFoundError:
            pass
        else:
            return redirect("inference:detail", group.slug, str(row["request_id"]))

    error: ApplicationError | None = None
    rows: list[dict[str, Any]] = []
    page = None
    try:
        filters = selectors.inference_filters_parse(raw)
        page = selectors.inference_list(
            group=group, filters=filters, after=cursor, limit=PAGE_SIZE
        )
        rows = page.rows
    except ApplicationError as exc:
        error = exc

    labels = _version_labels({r["version_id"] for r in rows if r["version_id"]})
    for row in rows:
        row["version"] = labels.get(row["version_id"])
        row["detail_url"] = reverse(
            "inference:detail", args=[group.slug, str(row["request_id"])]
        )
    applied = page.filters if page else None
    older_url = export_url = None
    if page is not None and applied is not None:
        if page.next_cursor:
            older_url = "?" + urlencode(
                {**applied.as_query(), "cursor": page.next_cursor}
            )
        export = _url("api:group-inference-export", group.slug)
        if export:
            export_url = f"{export}?{urlencode(applied.as_query())}"
    members = _member_choices(group)
    context = {
        "group": group,
        "logged": selectors.has_log(group),
        "rows": rows,
        "raw": raw,
        "id_value": raw.get("request_id") or raw.get("client_request_id") or "",
        "error": error,
        "applied": applied,
        "since_value": _form_time(applied.since) if applied and "since" in raw else "",
        "until_value": _form_time(applied.until) if applied and "until" in raw else "",
        "filtered": bool(set(raw) - {"since", "until"}),
        "paged": bool(cursor),
        "newest_url": "?" + urlencode(raw) if raw else request.path,
        "older_url": older_url,
        "export_url": export_url,
        "members": members,
        "versions": sorted(
            {(m["version_id"], m["version_label"]) for m in members},
            key=lambda v: v[1],
        ),
        "roles": selectors.ROLES,
        "statuses": sorted({*STATUSES, raw.get("status", "ok")}),
        "group_url": _url("groups:group-detail", group.slug),
        "groups_count": ModelGroup.objects.count(),
    }
    return render(
        request,
        "inference/browser.html",
        context,
        status=400 if error is not None else 200,
    )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@role_required(read=Role.VIEWER)
def detail(request: HttpRequest, slug: str, request_id: str) -> HttpResponse:
    """One inference: payloads, timings, caller, feedback, audit events, SHAP."""
    group = get_object_or_404(_groups(), slug=slug)
    try:
        row = selectors.inference_get(group=group, request_id=request_id)
    except NotFoundError as exc:
        raise Http404(exc.message) from exc
    explanation = row.get("explanation")
    chart = chart_error = None
    rest: list[tuple[str, Any]] = []
    if explanation is not None:
        try:
            chart = charts.waterfall(explanation)
        except ValueError as exc:
            chart_error = str(exc)
        else:
            names = set(chart.bars[-1].names)
            rest = [(n, v) for n, v in explanation["values"].items() if n in names]
            rest.sort(key=lambda kv: -abs(kv[1]))
    related = selectors.inference_related(group=group, row=row)
    for other in related:
        other["detail_url"] = reverse(
            "inference:detail", args=[group.slug, str(other["request_id"])]
        )
    version = _version_labels({row["version_id"]} if row["version_id"] else set())
    member = (
        Membership.objects.filter(pk=row["member_id"]).first()
        if row["member_id"]
        else None
    )
    latency, model_latency = row["latency_ms"], row["model_latency_ms"]
    context = {
        "group": group,
        "row": row,
        "version": version.get(row["version_id"]),
        "member": member,
        "overhead_ms": (
            latency - model_latency
            if latency is not None and model_latency is not None
            else None
        ),
        "input_json": _pretty(row["input"]),
        "output_json": _pretty(row["output"]),
        "feedback_json": _pretty(row["feedback"]) if row["feedback"] else None,
        "explanation_json": _pretty(explanation) if explanation else None,
        "chart": chart,
        "chart_error": chart_error,
        "rest": rest,
        "audit_events": selectors.audit_events_for(row=row),
        "related": related,
        "browser_url": reverse("inference:group", args=[group.slug]),
        "api_url": _url(
            "api:group-inference-detail", group.slug, str(row["request_id"])
        ),
        "group_url": _url("groups:group-detail", group.slug),
    }
    return render(request, "inference/detail.html", context)
