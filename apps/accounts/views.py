from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import services
from apps.accounts.decorators import role_required
from apps.accounts.forms import ApiKeyForm
from apps.accounts.models import ApiKey
from apps.accounts.roles import Role


@role_required(read=Role.ADMIN, write=Role.ADMIN)
def api_keys(request: HttpRequest) -> HttpResponse:
    """List, issue (shown once) and revoke the organisation's API keys."""
    new_key = None
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, new_key = services.api_key_create(actor=request.user, **form.cleaned_data)
        form = ApiKeyForm()
    context = {"form": form, "new_key": new_key, "keys": ApiKey.objects.all()}
    return render(request, "accounts/api_keys.html", context)


@require_POST
@role_required(read=Role.ADMIN, write=Role.ADMIN)
def api_key_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    api_key = services.api_key_revoke(prefix=prefix, actor=request.user)
    messages.success(request, f"Key '{api_key.name}' ({api_key.prefix}…) is revoked.")
    return redirect("accounts:api-keys")
