from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.decorators import role_required
from apps.accounts.models import ApiKey
from apps.audit.models import AuditEvent


@role_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    """What this organisation has, read from its schema; empty states say what to do."""
    context = {
        "user_count": User.objects.filter(is_active=True).count(),
        "active_key_count": ApiKey.objects.filter(revoked=False).count(),
        "recent_events": AuditEvent.objects.all()[:10],
    }
    return render(request, "core/dashboard.html", context)
