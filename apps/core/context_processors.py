from typing import Any

from django.http import HttpRequest

from apps.accounts.roles import user_role
from apps.core.navigation import nav_for


def shell(request: HttpRequest) -> dict[str, Any]:
    """Tenant, role and navigation for the base template."""
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.schema_name == "public":
        return {"tenant": tenant, "nav": None, "role": None}
    role = user_role(getattr(request, "user", None))
    return {"tenant": tenant, "role": role, "nav": nav_for(role, request.path)}
