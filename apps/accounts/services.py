"""Users with roles and API keys, in the current tenant schema."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import Group, User
from django.db import transaction

from apps.accounts.models import ApiKey
from apps.accounts.roles import ROLE_NAMES, Role, Scope
from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, ConflictError, NotFoundError


def role_groups_ensure() -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_NAMES}


@transaction.atomic
def user_create(
    *, email: str, role: str, password: str | None = None, actor: Any = None
) -> User:
    """A tenant user whose username is the email; admins also get the Django admin."""
    assert_tenant_schema()
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise ApplicationError(
            str(exc), code="invalid", fields={"role": [str(exc)]}
        ) from exc
    email = email.strip().lower()
    if not email or "@" not in email:
        raise ApplicationError(
            "A valid email is needed.",
            code="invalid",
            fields={"email": ["Enter a valid email address."]},
        )
    if User.objects.filter(username=email).exists():
        raise ConflictError(f"User {email} exists.", fields={"email": ["taken"]})
    user = User.objects.create_user(
        username=email,
        email=email,
        password=password,
        is_staff=parsed is Role.ADMIN,
        is_superuser=parsed is Role.ADMIN,
    )
    user.groups.add(role_groups_ensure()[parsed.label])
    audit_record(
        actor=actor,
        action="user.create",
        obj=user,
        after={"email": email, "role": parsed.label},
    )
    return user


@transaction.atomic
def user_set_password(*, email: str, password: str, actor: Any = None) -> User:
    assert_tenant_schema()
    user = User.objects.select_for_update().get(username=email.strip().lower())
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=actor, action="user.set_password", obj=user)
    return user


def _validate_scope(scope: str) -> None:
    if scope not in (Scope.PREDICT, Scope.MANAGE):
        raise ApplicationError(
            f"Unknown scope '{scope}'.",
            code="invalid",
            fields={"scope": [f"Choose '{Scope.PREDICT}' or '{Scope.MANAGE}'."]},
        )


@transaction.atomic
def api_key_create(
    *, name: str, scope: str, actor: Any = None, expiry_date: Any = None
) -> tuple[ApiKey, str]:
    """Issue a key; the plaintext is returned once and stored only as a hash."""
    assert_tenant_schema()
    _validate_scope(scope)
    name = name.strip()
    if not name or len(name) > 50:
        raise ApplicationError(
            "A key needs a name of 1-50 characters.",
            code="invalid",
            fields={"name": ["1-50 characters."]},
        )
    api_key, raw = ApiKey.objects.create_key(
        name=name,
        scope=scope,
        expiry_date=expiry_date,
        created_by=str(actor or "")[:254],
    )
    audit_record(
        actor=actor,
        action="api_key.create",
        obj=api_key,
        # A key's primary key embeds its hash; the trail names keys by prefix.
        object_id=api_key.prefix,
        after={"name": name, "scope": scope, "prefix": api_key.prefix},
    )
    return cast(ApiKey, api_key), raw


@transaction.atomic
def api_key_revoke(*, prefix: str, actor: Any = None) -> ApiKey:
    """Revoke for good (a revoked key cannot be restored)."""
    assert_tenant_schema()
    try:
        api_key = ApiKey.objects.select_for_update().get(prefix=prefix)
    except ApiKey.DoesNotExist as exc:
        raise NotFoundError(f"No API key with prefix '{prefix}'.") from exc
    if not api_key.revoked:
        api_key.revoked = True
        api_key.save(update_fields=["revoked"])
        audit_record(
            actor=actor,
            action="api_key.revoke",
            obj=api_key,
            object_id=api_key.prefix,
            before={"revoked": False},
            after={"revoked": True},
        )
    return api_key
