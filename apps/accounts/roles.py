"""Tenant roles. A user's role is the auth Group of the same name in the tenant's
schema (a tenant superuser is an admin); an API key carries a scope instead."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Role(IntEnum):
    VIEWER = 1  # read only
    EDITOR = 2  # models, groups, jobs, promotion
    ADMIN = 3  # users, keys, providers

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.upper()]
        except KeyError as exc:
            raise ValueError(f"unknown role '{value}'") from exc


ROLE_NAMES = [r.label for r in Role]


class Scope:
    PREDICT = "predict"  # the prediction doors and feedback only
    MANAGE = "manage"  # the whole API
    CHOICES = [(PREDICT, "predict"), (MANAGE, "manage")]


def user_role(user: Any) -> Role | None:
    """The strongest role a signed-in user holds in the current tenant, or None."""
    if (
        user is None
        or not getattr(user, "is_authenticated", False)
        or not user.is_active
    ):
        return None
    if not hasattr(user, "groups"):  # an API-key principal: it has a scope, not a role
        return None
    if user.is_superuser:
        return Role.ADMIN
    cached: Role | bool | None = getattr(user, "_modelhub_role", False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    names = set(user.groups.values_list("name", flat=True))
    role = max((r for r in Role if r.label in names), default=None)
    user._modelhub_role = role
    return role
