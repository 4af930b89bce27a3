"""Creating and removing tenants: schema, domains, first admin."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context

from apps.core.errors import ApplicationError, ConflictError, NotFoundError
from apps.tenants.models import Domain, Organization

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
RESERVED_SLUGS = {"public", "information_schema", "admin", "api", "www", "static"}


@dataclass(frozen=True)
class CreatedTenant:
    organization: Organization
    domain: str
    admin_email: str
    admin_password: str


def default_domain(slug: str) -> str:
    return f"{slug.replace('_', '-')}.{settings.TENANT_DOMAIN_SUFFIX}"


def validate_slug(slug: str) -> str:
    if not SLUG_RE.match(slug) or slug.startswith("pg_") or slug in RESERVED_SLUGS:
        raise ApplicationError(
            "A tenant slug is 2-40 characters: lowercase letters, digits and "
            "underscores, starting with a letter, not a reserved word.",
            code="invalid",
            fields={"slug": [f"'{slug}' is not a valid tenant slug."]},
        )
    return slug


def public_tenant_ensure(*, domain: str | None = None) -> Organization:
    """The public tenant (shared tables, landing page, platform admin)."""
    public, _ = Organization.objects.get_or_create(
        schema_name=get_public_schema_name(), defaults={"name": "ModelHub platform"}
    )
    Domain.objects.get_or_create(
        domain=domain or settings.PUBLIC_DOMAIN,
        defaults={"tenant": public, "is_primary": True},
    )
    return public


def tenant_create(
    *,
    slug: str,
    name: str,
    admin_email: str,
    domains: list[str] | None = None,
    admin_password: str | None = None,
) -> CreatedTenant:
    """Create the schema (migrated), its domains and a first admin user."""
    from apps.accounts.services import user_create

    validate_slug(slug)
    hosts = domains or [default_domain(slug)]
    if Organization.objects.filter(schema_name=slug).exists():
        raise ConflictError(
            f"Tenant '{slug}' already exists.", fields={"slug": ["taken"]}
        )
    taken = list(
        Domain.objects.filter(domain__in=hosts).values_list("domain", flat=True)
    )
    if taken:
        raise ConflictError(
            f"Domain already in use: {', '.join(taken)}.", fields={"domain": taken}
        )
    public_tenant_ensure()
    # Schema creation runs migrations and cannot share a transaction with the rows
    # below on every backend path; a failure afterwards removes the schema again.
    organization = Organization(schema_name=slug, name=name)
    organization.save(verbosity=0)
    try:
        with transaction.atomic():
            for index, host in enumerate(hosts):
                Domain.objects.create(
                    domain=host, tenant=organization, is_primary=index == 0
                )
            password = admin_password or secrets.token_urlsafe(12)
            with schema_context(slug):
                user_create(email=admin_email, role="admin", password=password)
    except Exception:
        organization.delete(force_drop=True)
        raise
    return CreatedTenant(organization, hosts[0], admin_email, password)


def tenant_delete(*, slug: str) -> None:
    """Drop the tenant's schema and every row in it, and its domains."""
    if slug == get_public_schema_name():
        raise ApplicationError("The public schema cannot be deleted.", code="invalid")
    try:
        organization = Organization.objects.get(schema_name=slug)
    except Organization.DoesNotExist as exc:
        raise NotFoundError(f"No tenant '{slug}'.") from exc
    with connection.cursor() as cursor:
        # Deferred FK checks still pending in this transaction would block DROP.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    organization.delete(force_drop=True)


def tenant_url(organization: Organization, path: str = "/") -> str:
    domain = organization.get_primary_domain()
    host = domain.domain if domain else default_domain(organization.schema_name)
    port = settings.SITE_PORT
    return f"http://{host}{':' + str(port) if port else ''}{path}"
