"""Who may do what: people by role, machines by key scope."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from apps.accounts.authentication import ApiKeyPrincipal
from apps.accounts.roles import Role, Scope, user_role
from apps.core.db import is_public_schema


def required_role(view: Any, method: str) -> Role:
    if method in permissions.SAFE_METHODS:
        return getattr(view, "read_role", Role.VIEWER)
    return getattr(view, "write_role", Role.EDITOR)


class TenantRolePermission(permissions.BasePermission):
    """Views declare `read_role`, `write_role` (people) and `key_scopes` (machines).

    Defaults: viewers read, editors write, only `manage` keys. A `manage` key may use
    the whole API; a `predict` key only views that list it in `key_scopes`.
    """

    message = "You may not do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_public_schema():
            return False
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            scopes = getattr(view, "key_scopes", (Scope.MANAGE,))
            if user.scope in scopes:
                return True
            self.message = f"This API key's scope '{user.scope}' does not allow this."
            return False
        role = user_role(user)
        if role is None:
            if getattr(user, "is_authenticated", False):
                self.message = "Your account has no role in this organisation."
            return False
        needed = required_role(view, request.method or "GET")
        if role >= needed:
            return True
        self.message = f"This needs the {needed.label} role; you are {role.label}."
        return False
