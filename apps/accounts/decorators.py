"""Role checks for server-rendered pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from apps.accounts.roles import Role, user_role
from apps.core.db import is_public_schema


def role_required(
    read: Role = Role.VIEWER, write: Role = Role.EDITOR
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Signed-in users with `read` for GET/HEAD, `write` for anything else."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if is_public_schema():
                raise PermissionDenied
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            role = user_role(request.user)
            needed = read if request.method in ("GET", "HEAD", "OPTIONS") else write
            if role is None or role < needed:
                raise PermissionDenied
            request.role = role  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
