"""Settings → Providers: everyone reads, admins configure. Every write is a service."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.providers import services
from apps.providers.forms import ProviderBulkForm, ProviderForm
from apps.providers.models import ProviderConfig
from apps.providers.selectors import ProviderFilter, provider_usage_month

BULK_LEVELS = {
    "ok": messages.SUCCESS,
    "deleted": messages.SUCCESS,
    "failed": messages.ERROR,
    "error": messages.ERROR,
    "not_found": messages.WARNING,
}


@role_required(read=Role.VIEWER, write=Role.ADMIN)
def provider_list(request: HttpRequest) -> HttpResponse:
    """The providers with health and this month's usage; filters in the query string."""
    filterset = ProviderFilter(request.GET, queryset=ProviderConfig.objects.all())
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    usage = provider_usage_month(provider_ids=[p.pk for p in page.object_list])
    for provider in page.object_list:
        provider.usage_month = usage[provider.pk]  # type: ignore[attr-defined]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filter": filterset,
        "page": page,
        "query": query.urlencode(),
        "filtered": any(request.GET.get(k) for k in filterset.form.fields),
        "total": ProviderConfig.objects.count(),
        "can_manage": request.role >= Role.ADMIN,  # type: ignore[attr-defined]
        "bulk_form": ProviderBulkForm(),
    }
    return render(request, "providers/provider_list.html", context)


def _kind_switch(
    request: HttpRequest, switch_url: str, provider: ProviderConfig | None = None
) -> HttpResponse:
    """htmx: the form's inputs again, for the kind just chosen, keeping what was typed."""
    initial: dict[str, Any] = request.GET.dict()
    initial["enabled"] = "enabled" in request.GET
    form = ProviderForm(
        initial=initial,
        instance=provider,
        kind=request.GET.get("kind"),
        switch_url=switch_url,
    )
    return render(request, "providers/_form_fields.html", {"form": form})


@role_required(read=Role.ADMIN, write=Role.ADMIN)
def provider_create(request: HttpRequest) -> HttpResponse:
    switch_url = reverse("providers:provider-create")
    if request.method == "GET" and request.htmx and "kind" in request.GET:  # type: ignore[attr-defined]
        return _kind_switch(request, switch_url)
    form = ProviderForm(
        request.POST or None, kind=request.GET.get("kind"), switch_url=switch_url
    )
    if request.method == "POST" and form.is_valid():
        try:
            provider = services.provider_create(
                actor=request.user,
                api_key=form.new_api_key() or "",
                **form.service_fields(),
            )
        except ApplicationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, f"Provider '{provider.name}' is saved.")
            return redirect("providers:provider-list")
    return render(
        request, "providers/provider_form.html", {"form": form, "provider": None}
    )


@role_required(read=Role.ADMIN, write=Role.ADMIN)
def provider_edit(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_object_or_404(ProviderConfig, pk=pk)
    switch_url = reverse("providers:provider-edit", args=[pk])
    if request.method == "GET" and request.htmx and "kind" in request.GET:  # type: ignore[attr-defined]
        return _kind_switch(request, switch_url, provider)
    form = ProviderForm(request.POST or None, instance=provider, switch_url=switch_url)
    if request.method == "POST" and form.is_valid():
        try:
            provider = services.provider_update(
                provider=provider,
                actor=request.user,
                api_key=form.new_api_key(),
                **form.service_fields(),
            )
        except ApplicationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, f"Provider '{provider.name}' is saved.")
            return redirect("providers:provider-list")
    return render(
        request,
        "providers/provider_form.html",
        {"form": form, "provider": ProviderConfig.objects.get(pk=pk)},
    )


@require_POST
@role_required(read=Role.ADMIN, write=Role.ADMIN)
def provider_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Test the connection now; htmx gets the health cell, a plain form a redirect."""
    provider = get_object_or_404(ProviderConfig, pk=pk)
    provider = services.provider_test(provider=provider, actor=request.user)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "providers/_health.html", {"provider": provider})
    if provider.last_health_status == ProviderConfig.Health.OK:
        messages.success(
            request,
            f"{provider.name}: ok · {provider.last_health_latency_ms:.0f} ms",
        )
    else:
        messages.error(
            request,
            f"{provider.name}: {provider.last_health_error_code} — "
            f"{provider.last_health_error}",
        )
    return redirect("providers:provider-list")


@role_required(read=Role.ADMIN, write=Role.ADMIN)
def provider_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm, then delete; a provider something still uses is refused."""
    provider = get_object_or_404(ProviderConfig, pk=pk)
    status = 200
    if request.method == "POST":
        name = provider.name
        try:
            services.provider_delete(provider=provider, actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            status = 409
        else:
            messages.success(request, f"Provider '{name}' is deleted.")
            return redirect("providers:provider-list")
    dependents = services.provider_dependents(provider=provider)
    return render(
        request,
        "providers/provider_confirm_delete.html",
        {"provider": provider, "dependents": dependents},
        status=status,
    )


@require_POST
@role_required(read=Role.ADMIN, write=Role.ADMIN)
def provider_bulk(request: HttpRequest) -> HttpResponse:
    """One action over the ticked providers; each item's outcome becomes a message."""
    form = ProviderBulkForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}"
            for name, errors in form.errors.items()
        )
        messages.error(request, f"Nothing was done. {problems}")
        return redirect("providers:provider-list")
    report = services.provider_bulk(actor=request.user, **form.cleaned_data)
    for item in report["results"]:
        label = item.get("name") or f"#{item['id']}"
        text = f"{label}: {item['status'].replace('_', ' ')}"
        if item.get("error"):
            text += f" — {item['error']}"
        messages.add_message(
            request, BULK_LEVELS.get(item["status"], messages.INFO), text
        )
    return redirect("providers:provider-list")
