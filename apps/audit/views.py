from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.decorators import role_required
from apps.audit.selectors import audit_event_list


@role_required()
def event_list(request: HttpRequest) -> HttpResponse:
    action = request.GET.get("action") or None
    events = audit_event_list(action=action)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "audit/event_list.html", {"page": page, "action": action})
