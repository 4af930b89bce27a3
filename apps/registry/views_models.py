"""Models pages: the list, a model with its versions and their metadata, and the
import from a provider's catalogue. Everyone reads; editors change status and
import. Every write is a service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.inference.importance import version_importance
from apps.providers import services as provider_services
from apps.providers.connectors.base import DiscoveredModel
from apps.providers.models import ProviderConfig
from apps.registry import selectors, services
from apps.registry.forms_models import ImportProviderForm
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.selectors import ModelFilter

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "auc": "AUC",
    "precision": "Precision",
    "recall": "Recall",
    "mae": "MAE",
    "rmse": "RMSE",
    "r2": "R²",
    "latency_ms": "Latency (ms)",
    "throughput_rps": "Throughput (req/s)",
}
INFO_LABELS = {
    "provider": "Provider",
    "external_id": "External id",
    "name": "Name",
    "architecture": "Architecture",
    "architecture_detail": "Architecture detail",
    "task": "Task",
    "modalities": "Modalities",
    "capabilities": "Capabilities",
    "context_window": "Context window (tokens)",
    "max_output_tokens": "Max output (tokens)",
    "parameter_count": "Parameters",
    "repo_id": "Repository",
}
TRAINING_LABELS = {
    "dataset": "Dataset",
    "framework": "Framework",
    "framework_version": "Framework version",
    "trained_at": "Trained on",
    "resources": "Resources",
}


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def model_list(request: HttpRequest) -> HttpResponse:
    """Models with their version count and latest version; filters in the query."""
    filterset = ModelFilter(request.GET, queryset=selectors.model_list())
    filterset.form.fields["provider"].widget = forms.Select(
        choices=[("", "any"), *selectors.provider_choices()]
    )
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filter": filterset,
        "page": page,
        "query": query.urlencode(),
        "filtered": any(request.GET.get(k) for k in filterset.form.fields),
        "total": RegisteredModel.objects.count(),
        "can_edit": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
    }
    return render(request, "registry/model_list.html", context)


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A model, its versions table and each version's metadata in sections."""
    model = get_object_or_404(selectors.model_list(), slug=slug)
    versions = list(selectors.model_versions(model=model))
    for version in versions:
        version.sections = version_sections(version)  # type: ignore[attr-defined]
    context = {
        "model": model,
        "versions": versions,
        "can_edit": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
    }
    return render(request, "registry/model_detail.html", context)


def _set_status(request: HttpRequest, slug: str, pk: int, status: str) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.select_related("model"), pk=pk, model__slug=slug
    )
    try:
        services.version_set_status(version=version, status=status, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{version.model.name} v{version.number} is {status}."
        )
    return redirect("registry:model-detail", slug=slug)


@require_POST
@role_required(read=Role.EDITOR, write=Role.EDITOR)
def version_activate(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _set_status(request, slug, pk, ModelVersion.Status.ACTIVE)


@require_POST
@role_required(read=Role.EDITOR, write=Role.EDITOR)
def version_archive(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    return _set_status(request, slug, pk, ModelVersion.Status.ARCHIVED)


# --- import from a provider --------------------------------------------------------


def _catalogue_rows(provider: ProviderConfig) -> list[dict[str, Any]]:
    """The provider's catalogue (a provider call) marked with what is imported."""
    catalogue = provider_services.provider_models(provider=provider)
    imported = selectors.imported_versions(
        provider=provider, external_ids=[m.id for m in catalogue]
    )
    return [{"model": m, "imported": imported.get(m.id)} for m in catalogue]


def _catalogue(provider: ProviderConfig | None) -> dict[str, Any]:
    context: dict[str, Any] = {"rows": [], "error": "", "provider": provider}
    if provider is not None:
        try:
            context["rows"] = _catalogue_rows(provider)
        except ApplicationError as exc:
            context["error"] = exc.message
    return context


def _provider_or_none(value: str) -> ProviderConfig | None:
    if not value.isdigit():
        return None
    return ProviderConfig.objects.filter(pk=int(value)).first()


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def import_provider_catalogue(request: HttpRequest) -> HttpResponse:
    """htmx: the chosen provider's catalogue with a checkbox per model."""
    provider_id = request.GET.get("provider", "")
    if provider_id.isdigit():
        get_object_or_404(ProviderConfig, pk=int(provider_id))
    return render(
        request, "registry/_catalogue.html", _catalogue(_provider_or_none(provider_id))
    )


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def import_provider(request: HttpRequest) -> HttpResponse:
    """Pick a provider, tick models of its catalogue, choose a mode: a report."""
    form = ImportProviderForm(request.POST or None, initial=request.GET.dict())
    context: dict[str, Any] = {
        "form": form,
        "report": None,
        "has_providers": ProviderConfig.objects.exists(),
        "checked": set(request.POST.getlist("external_ids")),
    }
    status = 200
    if request.method == "POST":
        if form.is_valid():
            provider = form.cleaned_data["provider"]
            try:
                report = _import(request, provider, form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = exc.status_code
            else:
                context["report"] = report
                context["provider"] = provider
        else:
            status = 400
    if context["report"] is None:
        # The catalogue again (after a refused form, or ?provider= in a link).
        chosen = _provider_or_none((request.POST or request.GET).get("provider", ""))
        if chosen is not None:
            context["catalogue"] = _catalogue(chosen)
    return render(request, "registry/import_provider.html", context, status=status)


def _import(
    request: HttpRequest, provider: ProviderConfig, data: dict[str, Any]
) -> dict[str, Any]:
    # Metadata from the provider's own catalogue entries, read again now.
    catalogue = {m.id: m for m in provider_services.provider_models(provider=provider)}
    items = []
    for external_id in data["external_ids"]:
        found: DiscoveredModel | None = catalogue.get(external_id)
        items.append(
            {
                "external_id": external_id,
                "metadata": services.metadata_from_discovery(provider, found)
                if found
                else None,
            }
        )
    report = services.model_import_batch(
        provider=provider,
        items=items,
        mode=data["mode"],
        activate=data["activate"],
        actor=request.user,
    )
    slugs = selectors.model_slugs_of_versions(
        version_ids=[r["version_id"] for r in report["results"]]
    )
    for row in report["results"]:
        row["slug"] = slugs.get(row["version_id"]) if row["version_id"] else None
    return report


# --- what a version's metadata looks like on the page ------------------------------


def version_sections(version: ModelVersion) -> dict[str, Any]:
    """A version's canonical metadata shaped for the page's sections (no ORM)."""
    metadata = version.metadata or {}
    info = metadata.get("model_info") or {}
    training = metadata.get("training") or {}
    metrics = dict(version.metrics or metadata.get("performance") or {})
    extra = metrics.pop("extra", None) or {}
    # Known metrics in a fixed order (stored JSON keeps none), then any others.
    order = {key: i for i, key in enumerate(METRIC_LABELS)}
    cards = [
        {"key": key, "label": METRIC_LABELS.get(key, key), "value": value}
        for key, value in sorted(
            metrics.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])
        )
        if isinstance(value, int | float)
    ]
    cards += [
        {"key": key, "label": key, "value": value}
        for key, value in sorted(extra.items())
        if isinstance(value, int | float)
    ]
    importance = metadata.get("feature_importance") or {}
    largest = max((abs(v) for v in importance.values()), default=0) or 1
    bars = [
        {
            "name": name,
            "value": value,
            "percent": round(abs(value) / largest * 100, 1),
        }
        for name, value in sorted(importance.items(), key=lambda kv: -abs(kv[1]))
    ]
    input_schema = version.input_schema or metadata.get("input_schema") or []
    output_schema = version.output_schema or metadata.get("output_schema") or {}
    observed = version_importance(version.pk)[:15]
    top = max((r["mean_abs"] for r in observed), default=0) or 1
    observed_bars = [
        {
            "name": r["feature"],
            "value": round(r["mean_abs"], 6),
            "percent": round(r["mean_abs"] / top * 100, 1),
            "count": r["count"],
        }
        for r in observed
    ]
    return {
        "observed_importance": observed_bars,
        "info": _labelled(info, INFO_LABELS),
        "training": _labelled(training, TRAINING_LABELS),
        "metrics": cards,
        "input_schema": [
            {**feature, "constraints_text": _constraints(feature.get("constraints"))}
            for feature in input_schema
            if isinstance(feature, dict)
        ],
        "output_schema": output_schema if isinstance(output_schema, dict) else {},
        "pricing": metadata.get("pricing") or {},
        "license": metadata.get("license", ""),
        "importance": bars,
        "description": metadata.get("description", ""),
    }


def _labelled(values: dict[str, Any], labels: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for key, value in values.items():
        if value in (None, "", []):
            continue
        text = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        out.append((labels.get(key, key), str(text)))
    return out


def _constraints(constraints: Any) -> str:
    if not isinstance(constraints, dict):
        return ""
    parts = []
    if constraints.get("minimum") is not None:
        parts.append(f"≥ {_number(constraints['minimum'])}")
    if constraints.get("maximum") is not None:
        parts.append(f"≤ {_number(constraints['maximum'])}")
    if constraints.get("enum"):
        parts.append("one of " + ", ".join(str(v) for v in constraints["enum"]))
    if constraints.get("pattern"):
        parts.append(f"matches {constraints['pattern']}")
    if constraints.get("max_length"):
        parts.append(f"at most {constraints['max_length']} characters")
    return "; ".join(parts)


def _number(value: Any) -> str:
    """240.0 -> "240", 0.5 -> "0.5" (stored bounds are floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
