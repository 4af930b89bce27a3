"""Pages: `/notifications/` (each user) and `/settings/webhooks/` (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.notifications import selectors, services
from apps.notifications.forms import WebhookEndpointForm
from apps.notifications.models import WebhookEndpoint


@role_required(read=Role.VIEWER, write=Role.VIEWER)
def notification_list(request: HttpRequest) -> HttpResponse:
    items = selectors.notification_list(user=request.user)[:200]
    return render(request, "notifications/list.html", {"notifications": items})


@require_POST
@role_required(read=Role.VIEWER, write=Role.VIEWER)
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    notification = services.notification_mark_read(
        user=request.user, notification_id=pk
    )
    if request.POST.get("go") and notification.link.startswith("/"):
        return redirect(notification.link)
    return redirect("notifications:notification-list")


@require_POST
@role_required(read=Role.VIEWER, write=Role.VIEWER)
def notification_read_all(request: HttpRequest) -> HttpResponse:
    marked = services.notification_mark_all_read(user=request.user)
    messages.success(request, f"Marked {marked} as read.")
    return redirect("notifications:notification-list")


@role_required(read=Role.ADMIN, write=Role.ADMIN)
def webhook_list(request: HttpRequest) -> HttpResponse:
    """List and create endpoints (the secret is shown once) and recent deliveries."""
    new_secret = None
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _, new_secret = services.webhook_endpoint_create(
                actor=request.user, **form.cleaned_data
            )
            form = WebhookEndpointForm()
        except ApplicationError as exc:
            for field, errors in (exc.fields or {"url": [exc.message]}).items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
    context = {
        "form": form,
        "new_secret": new_secret,
        "endpoints": WebhookEndpoint.objects.all(),
        "deliveries": selectors.webhook_delivery_recent(),
    }
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "notifications/webhooks.html", context, status=status)


@require_POST
@role_required(read=Role.ADMIN, write=Role.ADMIN)
def webhook_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    services.webhook_endpoint_update(
        endpoint=endpoint, actor=request.user, enabled=not endpoint.enabled
    )
    state = "disabled" if endpoint.enabled else "enabled"
    messages.success(request, f"Endpoint {endpoint.url} {state}.")
    return redirect("notifications:webhook-list")


@require_POST
@role_required(read=Role.ADMIN, write=Role.ADMIN)
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    services.webhook_endpoint_delete(endpoint=endpoint, actor=request.user)
    messages.success(request, f"Endpoint {endpoint.url} deleted.")
    return redirect("notifications:webhook-list")
