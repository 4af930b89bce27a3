"""Creating and removing tenants: schema, domains, first admin."""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import (
    get_public_schema_name,
    quote_schema_name,
    schema_context,
)

from apps.core.errors import ApplicationError, ConflictError, NotFoundError
from apps.tenants.models import Domain, Organization

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
RESERVED_SLUGS = {"public", "information_schema", "admin", "api", "www", "static"}
# pg_advisory_xact_lock key: one template build or clone at a time per database.
TEMPLATE_LOCK_KEY = 0x6D6F64656C687562  # "modelhub"

logger = logging.getLogger(__name__)

MigrationKey = tuple[str, str]


@dataclass(frozen=True)
class CreatedTenant:
    organization: Organization
    domain: str
    admin_email: str
    admin_password: str


def default_domain(slug: str) -> str:
    return f"{slug.replace('_', '-')}.{settings.TENANT_DOMAIN_SUFFIX}"


def validate_slug(slug: str) -> str:
    if (
        not SLUG_RE.match(slug)
        or slug.startswith("pg_")
        or slug in RESERVED_SLUGS
        or slug == settings.TENANT_TEMPLATE_SCHEMA
    ):
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
    """Create the schema (a copy of the template, or migrated), its domains and a
    first admin user."""
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
    organization = _organization_create(slug=slug, name=name)
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


def _organization_create(*, slug: str, name: str) -> Organization:
    """The tenant row and its schema: cloned from the template, made current first
    under the template lock, or migrated when TENANT_TEMPLATE_SCHEMA is empty."""
    organization = Organization(schema_name=slug, name=name)
    template = template_schema_name()
    if not template:
        organization.save(verbosity=0)
        return organization
    with transaction.atomic():
        _template_lock()
        _template_make_current(template)
        organization.clone_template = template
        organization.save(verbosity=0)
        _clone_repair(template=template, schema=slug)
    if not connection.in_atomic_block:
        # End this database session: the clone function (reinstalled by every clone)
        # and every relation it copied stay cached in the server process for the
        # session's life, and a process creating tenant after tenant on one session
        # gets slower with each (measured: 1 s per tenant at first, 7 s by the 60th).
        # Django opens a new connection for the next query.
        connection.close()
    return organization


# Where django-tenants' clone_schema leaves the copy different from its template:
# unique constraints (with their indexes) get PostgreSQL's default names, which later
# migrations could not find, and identity sequences of integer columns become bigint.
# Each row is one statement that puts a difference right.
CLONE_REPAIRS = """
WITH constraints AS (
    SELECT n.nspname, c.relname, co.conname, pg_get_constraintdef(co.oid) AS def,
           row_number() OVER (PARTITION BY n.nspname, c.relname,
                                           pg_get_constraintdef(co.oid)
                              ORDER BY co.conname) AS nth
    FROM pg_constraint co
    JOIN pg_class c ON c.oid = co.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN (%(template)s, %(schema)s) AND co.contype IN ('p', 'u', 'x')
)
SELECT format('ALTER TABLE %%I.%%I RENAME CONSTRAINT %%I TO %%I',
              %(schema)s, copy.relname, copy.conname, source.conname)
FROM constraints AS source JOIN constraints AS copy USING (relname, def, nth)
WHERE source.nspname = %(template)s AND copy.nspname = %(schema)s
  AND copy.conname <> source.conname
UNION ALL
SELECT format('ALTER SEQUENCE %%I.%%I AS %%s INCREMENT BY %%s MINVALUE %%s '
              'MAXVALUE %%s START WITH %%s CACHE %%s %%s',
              %(schema)s, s.sequencename, t.data_type, t.increment_by, t.min_value,
              t.max_value, t.start_value, t.cache_size,
              CASE WHEN t.cycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
FROM pg_sequences t
JOIN pg_sequences s ON s.sequencename = t.sequencename AND s.schemaname = %(schema)s
WHERE t.schemaname = %(template)s
  AND (s.data_type, s.increment_by, s.min_value, s.max_value, s.start_value,
       s.cache_size, s.cycle)
      IS DISTINCT FROM (t.data_type, t.increment_by, t.min_value, t.max_value,
                        t.start_value, t.cache_size, t.cycle)
"""


def _clone_repair(*, template: str, schema: str) -> None:
    """Make the copy's names and sequence types those of its template."""
    with connection.cursor() as cursor:
        cursor.execute(CLONE_REPAIRS, {"template": template, "schema": schema})
        statements = [row[0] for row in cursor.fetchall()]
        if statements:
            cursor.execute(";\n".join(statements))


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


# --- the template schema new tenants are cloned from ---------------------------------


@dataclass(frozen=True)
class TemplateState:
    """How a template schema's recorded migrations compare with the code's."""

    name: str
    exists: bool
    missing: tuple[str, ...] = ()  # in the code, not applied to the template
    unknown: tuple[str, ...] = ()  # recorded in the template, not in the code

    @property
    def current(self) -> bool:
        return self.exists and not self.missing and not self.unknown

    def describe(self) -> str:
        """What is off, in words ("missing.", "2 to apply (a.b, c.d).", ...)."""
        if not self.exists:
            return "missing."
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} to apply ({', '.join(self.missing)})")
        if self.unknown:
            parts.append(f"{len(self.unknown)} unknown ({', '.join(self.unknown)})")
        return "; ".join(parts or ["current"]) + "."


def template_schema_name() -> str:
    """TENANT_TEMPLATE_SCHEMA ("" when cloning is off). A template is dropped and
    rebuilt at will, so the public schema or a tenant's is refused."""
    name: str = settings.TENANT_TEMPLATE_SCHEMA
    if name and (
        not SLUG_RE.match(name)
        or name == get_public_schema_name()
        or Organization.objects.filter(schema_name=name).exists()
    ):
        raise ImproperlyConfigured(
            f"TENANT_TEMPLATE_SCHEMA '{name}' must be a schema name of its own: "
            "lowercase letters, digits and underscores, not public, not a tenant."
        )
    return name


def migrations_compare(
    *,
    applied: set[MigrationKey],
    graph: Mapping[MigrationKey, frozenset[MigrationKey]],
    known: frozenset[MigrationKey],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(missing, unknown) as "app.name": graph maps each migration to what it
    replaces (a squash counts as applied when all it replaces are)."""
    missing = sorted(
        key
        for key, replaces in graph.items()
        if key not in applied and not (replaces and replaces <= applied)
    )
    unknown = sorted(applied - known)
    return (
        tuple(f"{app}.{name}" for app, name in missing),
        tuple(f"{app}.{name}" for app, name in unknown),
    )


@functools.cache
def _code_migrations() -> tuple[
    dict[MigrationKey, frozenset[MigrationKey]], frozenset[MigrationKey]
]:
    """The code's migration graph (as a new schema would apply it) and every name a
    schema may have recorded for it; read from disk once per process."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    graph = {
        key: frozenset(loader.graph.nodes[key].replaces or ())
        for key in loader.graph.nodes
    }
    replaced = {key for replaces in graph.values() for key in replaces}
    return graph, frozenset(set(loader.disk_migrations) | replaced)


def tenant_template_state(*, name: str) -> TemplateState:
    """Compare the template's django_migrations with the code's migrations."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            [f"{quote_schema_name(name)}.django_migrations"],
        )
        if not cursor.fetchone()[0]:
            return TemplateState(name=name, exists=False)
        cursor.execute(
            f"SELECT app, name FROM {quote_schema_name(name)}.django_migrations"  # noqa: S608
        )
        applied = {(app, migration) for app, migration in cursor.fetchall()}
    graph, known = _code_migrations()
    missing, unknown = migrations_compare(applied=applied, graph=graph, known=known)
    return TemplateState(name=name, exists=True, missing=missing, unknown=unknown)


def tenant_template_ensure(*, rebuild: bool = False) -> TemplateState | None:
    """Build the template schema again unless it is current (rebuild: in any case).
    None when cloning is off (TENANT_TEMPLATE_SCHEMA empty)."""
    name = template_schema_name()
    if not name:
        return None
    with transaction.atomic():
        _template_lock()
        if rebuild:
            _template_drop(name)
        return _template_make_current(name)


def tenant_template_drop() -> None:
    """Remove the template schema; the next tenant creation builds it again."""
    name = template_schema_name()
    if name:
        with transaction.atomic():
            _template_lock()
            _template_drop(name)


def _template_lock() -> None:
    """Serialise template builds and clones until the transaction ends: the clone
    function is reinstalled by every clone, and two builds would collide."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TEMPLATE_LOCK_KEY])


def _template_make_current(name: str) -> TemplateState:
    """Under the lock: unless the template has exactly the code's migrations, build
    it again from nothing, as a new tenant's schema is migrated."""
    state = tenant_template_state(name=name)
    if state.current:
        return state
    started = time.monotonic()
    _template_drop(name)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {quote_schema_name(name)}")
    # Not a tenant row, so `migrate_schemas` over the tenants never reaches it.
    call_command(
        "migrate_schemas",
        tenant=True,
        schema_name=name,
        interactive=False,
        verbosity=0,
    )
    built = tenant_template_state(name=name)
    if not built.current:
        raise ApplicationError(
            f"Tenant template '{name}' does not match the code after migrating: "
            + built.describe(),
            code="template_stale",
            status_code=500,
        )
    logger.info(
        "tenant template %s built in %.1f s (was: %s)",
        name,
        time.monotonic() - started,
        state.describe(),
    )
    return built


def _template_drop(name: str) -> None:
    with connection.cursor() as cursor:
        # Deferred FK checks pending in this transaction (a build just before) would
        # block DROP.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote_schema_name(name)} CASCADE")
