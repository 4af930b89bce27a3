"""The main navigation. An entry appears only once its page exists (its URL name
resolves) and the user's role may open it, so the menu never leads to a dead end."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from apps.accounts.roles import Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    role: Role = Role.VIEWER
    section: str = "main"


NAVIGATION = [
    NavItem("Dashboard", "core:dashboard"),
    NavItem("Models", "registry:model-list"),
    NavItem("Groups", "groups:group-list"),
    NavItem("Jobs", "jobs:job-list"),
    NavItem("Inference", "inference:browser"),
    NavItem("Providers", "providers:provider-list", Role.VIEWER, "settings"),
    NavItem("API keys", "accounts:api-keys", Role.ADMIN, "settings"),
    NavItem("Webhooks", "notifications:webhook-list", Role.ADMIN, "settings"),
    NavItem("Audit trail", "audit:event-list", Role.VIEWER, "settings"),
]


def nav_for(role: Role | None, current_path: str) -> dict[str, list[dict[str, object]]]:
    sections: dict[str, list[dict[str, object]]] = {"main": [], "settings": []}
    if role is None:
        return sections
    for item in NAVIGATION:
        if role < item.role:
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        active = current_path == url if url == "/" else current_path.startswith(url)
        sections[item.section].append(
            {"label": item.label, "url": url, "active": active}
        )
    return sections
