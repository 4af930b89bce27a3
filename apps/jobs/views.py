"""Jobs pages: the list (live progress), a job, and the Build-a-Model wizard."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.jobs import selectors, services
from apps.jobs.datasets import dataset_create, upload_size_check
from apps.jobs.forms import DatasetUploadForm
from apps.jobs.models import Dataset, Job
from apps.jobs.trainers.config import ALGORITHMS, training_config_clean

STEPS = ["Upload data", "Target", "Algorithm", "Review"]


def _can_edit(request: HttpRequest) -> bool:
    return bool(request.role >= Role.EDITOR)  # type: ignore[attr-defined]


@role_required()
def job_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    jobs = selectors.job_list()
    if status in Job.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "status": status,
        "statuses": Job.Status.values,
        "can_edit": _can_edit(request),
        "polling": any(j.is_active for j in page.object_list),
    }
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "jobs/_job_rows.html", context)
    return render(request, "jobs/job_list.html", context)


def _chart(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An inline-SVG polyline of the first metric series in the history."""
    if len(history) < 2:
        return None
    name = history[0]["name"]
    points = [(p["step"], p["value"]) for p in history if p["name"] == name]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    width, height = 600.0, 160.0
    span_x, span_y = (x1 - x0) or 1, (y1 - y0) or 1
    coords = " ".join(
        f"{(x - x0) / span_x * width:.1f},{height - (y - y0) / span_y * height:.1f}"
        for x, y in points
    )
    return {
        "name": name,
        "points": coords,
        "first": ys[0],
        "last": ys[-1],
        "steps": len(points),
    }


def _detail_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    metrics = job.metrics or {}
    return {
        "job": job,
        "events": list(selectors.job_events(job=job)),
        "scalar_metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
        "confusion": metrics.get("confusion_matrix"),
        "chart": _chart(job.metric_history),
        "config_json": json.dumps(job.config, indent=2),
        "can_edit": _can_edit(request),
    }


@role_required()
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(selectors.job_list(), pk=pk)
    context = _detail_context(request, job)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "jobs/_job_status.html", context)
    return render(request, "jobs/job_detail.html", context)


@require_POST
@role_required()
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    try:
        services.job_cancel(job=job, actor=request.user)
        messages.success(request, f"Job {job.pk}: cancellation requested.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("jobs:job-detail", pk=job.pk)


@require_POST
@role_required()
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    try:
        services.job_retry(job=job, actor=request.user)
        messages.success(request, f"Job {job.pk} queued again.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("jobs:job-detail", pk=job.pk)


def _hyperparameters(query: Any, algorithm: str) -> dict[str, Any]:
    spec = ALGORITHMS.get(algorithm, {}).get("params", {})
    out: dict[str, Any] = {}
    for name in spec:
        value = query.get(f"{algorithm}.{name}")
        if value is not None:
            out[name] = value
    if "fit_intercept" in spec and "algorithm_step" in query:
        out["fit_intercept"] = query.get(f"{algorithm}.fit_intercept") == "on"
    return out


def _config_from(query: Any) -> dict[str, Any]:
    algorithm = query.get("algorithm", "")
    return {
        "target": query.get("target", ""),
        "problem_type": query.get("problem_type") or None,
        "algorithm": algorithm,
        "hyperparameters": _hyperparameters(query, algorithm),
        "validation_split": query.get("validation_split", 0.2),
        "seed": query.get("seed", 42),
        "model_name": query.get("model_name", ""),
        "group": query.get("group", ""),
    }


@role_required(read=Role.EDITOR, write=Role.EDITOR)
def job_new(request: HttpRequest) -> HttpResponse:
    """The Build-a-Model wizard. State travels in the query string; the job is
    created only by the final POST."""
    if request.method == "POST":
        # Before the body is parsed: a file that cannot fit is refused at once.
        try:
            upload_size_check(request.META.get("CONTENT_LENGTH"))
        except ApplicationError as exc:
            messages.error(request, exc.message)
            response = _render_step(request, 0, {"form": DatasetUploadForm()})
            response.status_code = exc.status_code
            return response
    if request.method == "POST" and "config" not in request.POST:
        form = DatasetUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                dataset = dataset_create(
                    file=form.cleaned_data["file"],
                    name=form.cleaned_data["name"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                form.add_error("file", exc.message)
            else:
                return redirect(f"{request.path}?dataset={dataset.pk}")
        return _render_step(request, 0, {"form": form})
    if request.method == "POST":
        dataset = get_object_or_404(Dataset, pk=request.POST.get("dataset"))
        try:
            config = json.loads(request.POST["config"])
            job, _ = services.job_create(
                actor=request.user,
                dataset=dataset,
                config=config,
                idempotency_key=request.POST.get("idempotency_key") or None,
            )
        except (ApplicationError, ValueError) as exc:
            messages.error(request, getattr(exc, "message", str(exc)))
            return redirect(f"{request.path}?dataset={dataset.pk}")
        messages.success(request, f"Job {job.pk} queued.")
        return redirect("jobs:job-detail", pk=job.pk)

    query = request.GET
    if not query.get("dataset"):
        return _render_step(request, 0, {"form": DatasetUploadForm()})
    dataset = get_object_or_404(Dataset, pk=query.get("dataset"))
    context: dict[str, Any] = {"dataset": dataset, "query": query}
    if not query.get("target"):
        return _render_step(request, 1, context)
    if not query.get("algorithm_step"):
        context["algorithms"] = [
            {
                "key": key,
                "label": spec["label"],
                "problems": spec["problems"],
                "params": [
                    {
                        "name": n,
                        "kind": p.kind.__name__,
                        "default": p.default,
                        "low": p.low,
                        "high": p.high,
                    }
                    for n, p in spec["params"].items()
                ],
            }
            for key, spec in ALGORITHMS.items()
        ]
        return _render_step(request, 2, context)
    raw = _config_from(query)
    try:
        config = training_config_clean(
            raw, columns=dataset.columns, row_count=dataset.row_count
        )
    except ApplicationError as exc:
        context["errors"] = exc.fields or {"config": [exc.message]}
        config = raw
    context["config"] = config
    context["config_json"] = json.dumps(config)
    return _render_step(request, 3, context)


def _render_step(
    request: HttpRequest, step: int, context: dict[str, Any]
) -> HttpResponse:
    context = {
        **context,
        "step": step,
        "steps": [
            {"n": i + 1, "label": s, "current": i == step} for i, s in enumerate(STEPS)
        ],
        "recent": list(selectors.dataset_list()[:10]) if step == 0 else [],
    }
    return render(request, "jobs/job_new.html", context)
