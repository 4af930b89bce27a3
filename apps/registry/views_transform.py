"""Models → Import metadata: paste JSON/YAML, preview what was detected with a
confidence per field (htmx), then register it, accept it or keep it for review; and
the review list of what waits for a person. Every write is a service."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.providers.models import ProviderConfig
from apps.registry.models import Transformation
from apps.registry.transform import selectors, service
from apps.registry.transform.canonical import field_paths, get_path
from apps.registry.transform.service import ENGINES

HIGH, MEDIUM = 0.8, 0.5


def band(confidence: float) -> str:
    """high ≥ 0.8 > medium ≥ 0.5 > low > 0 = dropped."""
    if confidence <= 0:
        return "dropped"
    if confidence >= HIGH:
        return "high"
    if confidence >= MEDIUM:
        return "medium"
    return "low"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)


def preview_of(row: Transformation) -> dict[str, Any]:
    """What the preview partial shows of a recorded transformation."""
    metadata = row.result if isinstance(row.result, dict) else {}
    confidence = row.field_confidence if isinstance(row.field_confidence, dict) else {}
    paths = field_paths(metadata)
    paths += [p for p in confidence if p not in paths]
    fields = []
    for path in paths:
        score = float(confidence.get(path, 0) or 0)
        value = get_path(metadata, path)
        fields.append(
            {
                "path": path,
                "value": _show(value) if value is not None else "",
                "confidence": score,
                "percent": round(score * 100),
                "band": band(score),
            }
        )
    registrable = None
    if row.target_version_id is None:
        try:
            registrable = service.provider_for_registration(metadata, None)
        except ApplicationError:
            registrable = None
        info = metadata.get("model_info") or {}
        if not info.get("external_id"):
            registrable = None
    return {
        "row": row,
        "fields": fields,
        "overall_percent": round(row.overall_confidence * 100),
        "overall_band": band(row.overall_confidence) if fields else "dropped",
        "open": row.status
        in (Transformation.Status.PENDING_REVIEW, Transformation.Status.AUTO_ACCEPTED)
        and not (
            row.status == Transformation.Status.AUTO_ACCEPTED and row.target_version_id
        ),
        "registrable": registrable,
        "default_name": (metadata.get("model_info") or {}).get("name", ""),
    }


def _form_context(request: HttpRequest) -> dict[str, Any]:
    return {
        "engines": ENGINES,
        "providers": list(selectors.llm_providers()),
        "payload": request.POST.get("payload", ""),
        "engine": request.POST.get("engine", "auto"),
        "provider_id": request.POST.get("provider", ""),
    }


def _chosen_provider(value: str) -> ProviderConfig | None:
    if not value:
        return None
    if not value.isdigit():
        raise ApplicationError(
            "Choose a provider from the list.",
            code="invalid",
            fields={"provider": ["Not a provider."]},
        )
    return service.provider_get(pk=int(value))


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def model_import(request: HttpRequest) -> HttpResponse:
    """The paste form; POST (without htmx) answers the whole page with the preview."""
    context = _form_context(request)
    status = 200
    if request.method == "POST":
        preview, error, status = _run(request)
        context.update(preview=preview, error=error)
    return render(request, "registry/import.html", context, status=status)


@require_POST
@role_required(read=Role.EDITOR, write=Role.EDITOR)
def model_import_preview(request: HttpRequest) -> HttpResponse:
    """htmx: transform the pasted text, record it, answer the preview fragment."""
    preview, error, status = _run(request)
    # htmx swaps only 2xx answers: a refusal is shown in the fragment with 200.
    return render(
        request,
        "registry/_transform_preview.html",
        {"preview": preview, "error": error},
        status=200 if request.htmx else status,  # type: ignore[attr-defined]
    )


def _run(request: HttpRequest) -> tuple[dict[str, Any] | None, str, int]:
    payload = request.POST.get("payload", "")
    if not payload.strip():
        return None, "Paste some metadata first (JSON or YAML).", 400
    try:
        provider = _chosen_provider(request.POST.get("provider", ""))
        result = service.transform_metadata(
            payload=payload,
            engine=request.POST.get("engine", "auto"),
            provider=provider,
            actor=request.user,
        )
    except ApplicationError as exc:
        detail = "; ".join(
            f"{name}: {' '.join(msgs)}" for name, msgs in (exc.fields or {}).items()
        )
        return None, f"{exc.message}{f' ({detail})' if detail else ''}", exc.status_code
    row = Transformation.objects.get(pk=int(result.transformation_id or 0))
    return preview_of(row), "", 200


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def model_import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(Transformation, pk=pk)
    return render(request, "registry/import_detail.html", {"preview": preview_of(row)})


def _model_url(version: Any) -> str:
    try:
        return reverse("registry:model-detail", args=[version.model.slug])
    except NoReverseMatch:
        return reverse("registry:model-import-review")


@require_POST
@role_required(read=Role.EDITOR, write=Role.EDITOR)
def model_import_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """create | accept | review | reject one transformation."""
    row = get_object_or_404(Transformation, pk=pk)
    action = request.POST.get("action", "")
    back = reverse("registry:model-import-review")
    try:
        if action in ("create", "accept"):
            row, version = service.transformation_accept(
                transformation=row,
                actor=request.user,
                model_name=request.POST.get("model_name", "").strip()[:200],
            )
            if version is not None:
                messages.success(
                    request,
                    f"Registered as {version.model.name} v{version.number}.",
                )
                return redirect(_model_url(version))
            messages.success(
                request,
                f"Transformation {row.pk} is accepted; its metadata is kept with it "
                "(no provider is known to register it under).",
            )
        elif action == "review":
            service.transformation_hold(transformation=row, actor=request.user)
            messages.success(request, f"Transformation {row.pk} waits for review.")
        elif action == "reject":
            service.transformation_reject(
                transformation=row,
                actor=request.user,
                reason=request.POST.get("reason", ""),
            )
            messages.success(request, f"Transformation {row.pk} is rejected.")
        else:
            messages.error(request, "Choose create, accept, review or reject.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(back)


def _summary(row: Transformation) -> str:
    """ "name · task" of the proposed metadata, for the review list."""
    result = row.result if isinstance(row.result, dict) else {}
    raw = result.get("model_info")
    info: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = str(info.get("name") or info.get("external_id") or "—")
    return f"{name} · {info['task']}" if info.get("task") else name


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def model_import_review(request: HttpRequest) -> HttpResponse:
    """Transformations waiting for a person, newest first."""
    rows = selectors.transformation_list(status=Transformation.Status.PENDING_REVIEW)
    page = Paginator(rows, 25).get_page(request.GET.get("page"))
    for row in page.object_list:
        row.band = band(row.overall_confidence)  # type: ignore[attr-defined]
        row.percent = round(row.overall_confidence * 100)  # type: ignore[attr-defined]
        row.summary = _summary(row)  # type: ignore[attr-defined]
    context = {
        "page": page,
        "stats": selectors.transformation_stats(),
        "can_edit": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
    }
    return render(request, "registry/import_review.html", context)
