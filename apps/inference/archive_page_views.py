"""A group's archived inference days (page, or fragment for htmx requests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template import engines
from django.urls import NoReverseMatch, reverse

from apps.accounts.decorators import role_required
from apps.accounts.roles import Role
from apps.groups.models import ModelGroup
from apps.inference.retention import archive_list, retention_days_for

# An htmx request gets only the content block, so the same template serves the page
# and the fragment a group's page can load.
_FRAGMENT = "{% block content %}{% endblock content %}"


@role_required(read=Role.VIEWER, write=Role.EDITOR)
def group_archives(request: HttpRequest, slug: str) -> HttpResponse:
    """Days of the group's log archived to Parquet, with rows, size and downloads."""
    group = get_object_or_404(ModelGroup, slug=slug)
    archives = list(archive_list(group=group))
    for archive in archives:
        archive.download_url = reverse(  # type: ignore[attr-defined]
            "api:group-archive-download",
            kwargs={"slug": group.slug, "day": f"{archive.day:%Y-%m-%d}"},
        )
    days = retention_days_for(group)
    totals = archive_list(group=group).aggregate(rows=Sum("rows"), bytes=Sum("bytes"))
    try:
        group_url: str | None = reverse("groups:group-detail", args=[group.slug])
    except NoReverseMatch:  # the groups pages are not mounted
        group_url = None
    is_htmx = bool(getattr(request, "htmx", False))
    context = {
        "base_template": engines["django"].from_string(_FRAGMENT).template  # type: ignore[attr-defined]
        if is_htmx
        else "base.html",
        "group": group,
        "group_url": group_url,
        "archives": archives,
        "retention_days": days,
        "kept_from": datetime.now(UTC).date() - timedelta(days=days),
        "total_rows": totals["rows"] or 0,
        "total_bytes": totals["bytes"] or 0,
    }
    return render(request, "inference/archives.html", context)
