"""Groups pages: the list with traffic of the last 24 hours, the create flow, and a
group's page (members and weights editor, status, inference table, traffic config,
"Try it"). Everyone reads; editors change things. Every write is a service."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.groups import routing, selectors, services
from apps.groups.forms import (
    GroupForm,
    TryForm,
    example_inputs,
    format_canary_schedule,
    members_formset,
)
from apps.groups.models import ModelGroup
from apps.groups.serving import predict

# (status to set, button label, shown when the group's status is one of these)
STATUS_ACTIONS = [
    ("active", "Activate", {"draft", "paused", "archived"}),
    ("paused", "Pause", {"active"}),
    ("archived", "Archive", {"draft", "active", "paused"}),
]


def _can_edit(request: HttpRequest) -> bool:
    return request.role >= Role.EDITOR  # type: ignore[attr-defined,no-any-return]


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def group_list(request: HttpRequest) -> HttpResponse:
    """Groups with members and requests in the last 24 hours; filters in the query."""
    filterset = selectors.GroupFilter(request.GET, queryset=selectors.group_list())
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    for group in page.object_list:
        group.requests_24h = selectors.group_requests_24h(group=group)  # type: ignore[attr-defined]
        group.member_rows = selectors.members_in_order(group)  # type: ignore[attr-defined]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filter": filterset,
        "page": page,
        "query": query.urlencode(),
        "filtered": any(request.GET.get(k) for k in filterset.form.fields),
        "total": ModelGroup.objects.count(),
        "can_edit": _can_edit(request),
    }
    return render(request, "groups/group_list.html", context)


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def group_create(request: HttpRequest) -> HttpResponse:
    """A draft group and its members in one step; activation is a separate choice."""
    data = request.POST if request.method == "POST" else None
    form = GroupForm(data)
    formset = members_formset(data)
    status = 200
    if request.method == "POST":
        if form.is_valid() & formset.is_valid():
            try:
                with transaction.atomic():
                    group = services.group_create(
                        actor=request.user, **form.service_fields()
                    )
                    services.members_set(
                        group=group, members=formset.members(), actor=request.user
                    )
            except ApplicationError as exc:
                if exc.fields and "members" in exc.fields:
                    formset.add_service_error(exc)
                else:
                    form.add_service_error(exc)
            else:
                messages.success(
                    request,
                    f"Group '{group.name}' is created as a draft. Check the weights, "
                    "then activate it.",
                )
                return redirect("groups:group-detail", slug=group.slug)
        status = 400
    return render(
        request,
        "groups/group_form.html",
        {"form": form, "formset": formset, "group": None},
        status=status,
    )


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def group_edit(request: HttpRequest, slug: str) -> HttpResponse:
    """The group's settings and traffic config (members have their own editor)."""
    group = get_object_or_404(ModelGroup, slug=slug)
    form = GroupForm(request.POST or None, group=group)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = form.service_fields()
            try:
                if changes:
                    services.group_update(group=group, actor=request.user, **changes)
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(
                    request,
                    f"Group '{form.cleaned_data['name']}' is saved."
                    if changes
                    else "Nothing changed.",
                )
                return redirect("groups:group-detail", slug=group.slug)
        status = 400
    return render(
        request,
        "groups/group_form.html",
        {"form": form, "formset": None, "group": group},
        status=status,
    )


def _detail_context(
    request: HttpRequest, group: ModelGroup, **extra: Any
) -> dict[str, Any]:
    can_edit = _can_edit(request)
    members = selectors.members_in_order(group)
    config = group.traffic_config or {}
    schedule = (config.get("canary") or {}).get("schedule") or []
    context: dict[str, Any] = {
        "group": group,
        "members": members,
        "can_edit": can_edit,
        "routed_total": sum(
            m.weight for m in members if m.active and m.role != "shadow"
        ),
        "table": selectors.inference_table_status(group=group),
        "requests_24h": selectors.group_requests_24h(group=group),
        "schedule": schedule,
        "schedule_text": format_canary_schedule(schedule),
        "canary_now": (
            routing.canary_percent(schedule, group.test_start, timezone.now())
            if schedule and group.status == ModelGroup.Status.ACTIVE
            else None
        ),
        "extra_config": {
            k: v
            for k, v in config.items()
            if k not in ("sticky", "fallback_to_champion", "canary")
        },
        "status_actions": [
            (value, label)
            for value, label, shown_in in STATUS_ACTIONS
            if group.status in shown_in
        ]
        if can_edit
        else [],
    }
    if can_edit:
        context["formset"] = members_formset(group=group)
        context["try_form"] = TryForm(initial={"inputs": example_inputs(group)})
    context.update(extra)
    return context


def _group(slug: str) -> ModelGroup:
    return get_object_or_404(selectors.group_list(), slug=slug)


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def group_detail(request: HttpRequest, slug: str) -> HttpResponse:
    group = _group(slug)
    return render(request, "groups/group_detail.html", _detail_context(request, group))


@require_POST
@role_required(read=Role.VIEWER, write=Role.EDITOR)
def group_members(request: HttpRequest, slug: str) -> HttpResponse:
    """The weights editor: the whole member list replaced in one audited step."""
    group = _group(slug)
    formset = members_formset(request.POST, group=group)
    if str(group.routing_version) != request.POST.get("routing_version"):
        # The rows on the page no longer describe the group: saving them could drop a
        # member someone else just added.
        messages.error(
            request,
            "The group changed since this page was opened; here it is as it is now.",
        )
        return redirect("groups:group-detail", slug=group.slug)
    if formset.is_valid():
        try:
            services.members_set(
                group=group, members=formset.members(), actor=request.user
            )
        except ApplicationError as exc:
            formset.add_service_error(exc)
        else:
            messages.success(request, "Members and weights are saved.")
            return redirect("groups:group-detail", slug=group.slug)
    context = _detail_context(request, group, formset=formset)
    return render(request, "groups/group_detail.html", context, status=400)


@require_POST
@role_required(read=Role.VIEWER, write=Role.EDITOR)
def group_status(request: HttpRequest, slug: str) -> HttpResponse:
    """Activate (checks members, provisions the inference table), pause, archive."""
    group = get_object_or_404(ModelGroup, slug=slug)
    target = request.POST.get("status", "")
    try:
        group = services.group_set_status(
            group=group, status=target, actor=request.user
        )
    except ApplicationError as exc:
        messages.error(request, f"The group was not changed: {exc.message}")
    else:
        note = (
            f" Its requests are logged in {group.inference_table.name}."
            if group.status == ModelGroup.Status.ACTIVE
            else ""
        )
        messages.success(request, f"'{group.name}' is {group.status}.{note}")
    return redirect("groups:group-detail", slug=group.slug)


@require_POST
@role_required(read=Role.VIEWER, write=Role.EDITOR)
def group_try(request: HttpRequest, slug: str) -> HttpResponse:
    """One prediction through the same path as the API (logged, door "page")."""
    group = _group(slug)
    form = TryForm(request.POST)
    result: dict[str, Any] = {}
    status = 200
    if form.is_valid():
        try:
            prediction = predict(
                slug=group.slug,
                inputs=form.cleaned_data["inputs"],
                routing_key=form.cleaned_data["routing_key"] or None,
                requester=request.user.get_username(),
                door="page",
                request_id=getattr(request, "request_id", None),
            )
        except ApplicationError as exc:
            result = {"error": exc}
            status = exc.status_code
        else:
            result = {
                "prediction": prediction,
                "outputs_json": json.dumps(prediction.outputs, indent=2, default=str),
            }
    else:
        status = 400
    if request.htmx:  # type: ignore[attr-defined]
        # htmx swaps only 2xx answers; the partial carries the outcome itself.
        return render(request, "groups/_try_result.html", {"try_form": form, **result})
    context = _detail_context(request, group, try_form=form, **result)
    return render(request, "groups/group_detail.html", context, status=status)
