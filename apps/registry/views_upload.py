"""`/models/upload/`: register a model from a skops or ONNX file."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.registry.artifacts import max_bytes
from apps.registry.forms_upload import ModelUploadForm
from apps.registry.uploads import version_upload


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def model_upload(request: HttpRequest) -> HttpResponse:
    form = ModelUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                version = version_upload(
                    file=form.cleaned_data["file"],
                    model_name=form.cleaned_data["model_name"],
                    extra_files=form.extra_files(),
                    input_schema=form.cleaned_data["input_schema"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(
                    request,
                    f"{version.model.name} v{version.number} is registered "
                    f"({len(version.input_schema)} features).",
                )
                try:
                    url = reverse(
                        "registry:model-detail", kwargs={"slug": version.model.slug}
                    )
                except NoReverseMatch:
                    url = reverse("registry:model-upload")
                return redirect(url)
        status = 400
    return render(
        request,
        "registry/upload.html",
        {
            "form": form,
            "max_mb": max_bytes() // (1024 * 1024),
            "can_upload": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
        },
        status=status,
    )
