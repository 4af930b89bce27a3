from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Case, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from apps.accounts.decorators import role_required
from apps.accounts.models import ApiKey
from apps.accounts.roles import Role
from apps.audit.models import AuditEvent
from apps.core.db import analytics_alias
from apps.groups.comparison import group_comparison
from apps.groups.models import ModelGroup
from apps.groups.rollups import rollups_refresh

GLANCE_WINDOW = timedelta(hours=24)
GLANCE_LIMIT = 50
DASH = "\u2013"


def _glance(group: ModelGroup, now: Any) -> dict[str, Any]:
    """One group's state over the last 24 h, from its rollups (refreshed on the
    primary, read through the analytics alias)."""
    if group.status != ModelGroup.Status.ARCHIVED:
        rollups_refresh(group=group)
    data = group_comparison(
        group=group, since=now - GLANCE_WINDOW, until=now, using=analytics_alias()
    )
    active = [m for m in data["members"] if m["active"]]
    requests = sum(m["requests"] for m in data["members"])
    errors = sum(m["errors"] for m in data["members"])
    champion = next((m for m in active if m["role"] == "champion"), None)
    challengers = [m for m in active if m["role"] == "challenger"]
    verdicts = {v["member_id"]: v for v in data["verdicts"]}
    p95 = champion["p95_ms"] if champion else None
    return {
        "group": group,
        "champion": champion["label"] if champion else None,
        "challengers": [m["label"] for m in challengers],
        "requests": requests,
        "errors": errors,
        "error_rate": DASH if not requests else f"{errors / requests * 100:.2f} %",
        "p95": DASH if p95 is None else f"{p95:.1f} ms",
        "verdicts": [
            {"label": m["label"], **verdicts[m["member_id"]]}
            for m in challengers
            if m["member_id"] in verdicts
        ],
        "metric": data["primary_metric"],
    }


@role_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    """What this organisation has, read from its schema; empty states say what to do."""
    now = timezone.now()
    # Active first, then paused, draft, archived: ordered before the cut, so that
    # archived groups never push live ones off the page.
    rank = Case(
        *(
            When(status=status, then=Value(i))
            for i, status in enumerate(("active", "paused", "draft", "archived"))
        ),
        default=Value(4),
    )
    groups = list(ModelGroup.objects.order_by(rank, "name")[:GLANCE_LIMIT])
    context = {
        "user_count": User.objects.filter(is_active=True).count(),
        "active_key_count": ApiKey.objects.filter(revoked=False).count(),
        "recent_events": AuditEvent.objects.all()[:10],
        "glance": [_glance(g, now) for g in groups],
        "group_total": ModelGroup.objects.count(),
        "glance_limit": GLANCE_LIMIT,
        "can_edit": request.role >= Role.EDITOR,  # type: ignore[attr-defined]
    }
    return render(request, "core/dashboard.html", context)
