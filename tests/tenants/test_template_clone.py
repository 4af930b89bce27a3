"""New tenants are copies of the template schema: indistinguishable from a migrated
schema, the template kept current before every copy, invisible everywhere else."""

from __future__ import annotations

import logging
import pprint
import re
import threading
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client
from django_tenants.utils import schema_context
from rest_framework.test import APIClient

from apps.accounts.models import ThrottleWindow
from apps.accounts.services import api_key_create
from apps.core.errors import ApplicationError
from apps.tenants.demo import DEMO_GROUP, demo_rows, seed_demo_content
from apps.tenants.models import Domain, Organization
from apps.tenants.services import (
    _code_migrations,
    migrations_compare,
    tenant_create,
    tenant_delete,
    tenant_template_ensure,
    tenant_template_state,
)

PASSWORD = "correct-horse-battery"

# Every query names its schema as %(schema)s; what they return is compared with the
# schema's own name replaced by "S". Privileges are compared as they take effect: the
# copy spells out the owner's default privileges that a new table leaves implicit.
CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity,
               c.reloptions::text, pg_get_userbyid(c.relowner),
               COALESCE(c.relacl, acldefault(
                   (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))::text,
               obj_description(c.oid, 'pg_class')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity,
               a.attgenerated, a.attcollation::regcollation::text,
               col_description(c.oid, a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = %(schema)s ORDER BY 1, 2""",
    "constraints": """
        SELECT c.relname, co.conname, co.contype, pg_get_constraintdef(co.oid),
               co.condeferrable, co.condeferred, co.convalidated
        FROM pg_constraint co
        JOIN pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_class c ON c.oid = co.conrelid
        WHERE n.nspname = %(schema)s ORDER BY 1, 2""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), fn.nspname,
               t.tgenabled
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_proc p ON p.oid = t.tgfoid
        JOIN pg_namespace fn ON fn.oid = p.pronamespace
        WHERE n.nspname = %(schema)s AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_functiondef(p.oid),
               COALESCE(p.proacl, acldefault('f'::"char", p.proowner))::text
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %(schema)s ORDER BY 1, 2""",
    "sequences": """
        SELECT s.sequencename, s.data_type::text, s.start_value, s.min_value,
               s.max_value, s.increment_by, s.cycle, s.cache_size, s.last_value,
               t.relname, a.attname, d.deptype
        FROM pg_sequences s
        JOIN pg_namespace n ON n.nspname = s.schemaname
        JOIN pg_class sc ON sc.relname = s.sequencename AND sc.relnamespace = n.oid
        LEFT JOIN pg_depend d ON d.objid = sc.oid AND d.classid = 'pg_class'::regclass
             AND d.refclassid = 'pg_class'::regclass
        LEFT JOIN pg_class t ON t.oid = d.refobjid
        LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE s.schemaname = %(schema)s ORDER BY 1""",
    "types": """
        SELECT t.typname, t.typtype FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = %(schema)s AND t.typrelid = 0 AND t.typelem = 0
        ORDER BY 1""",
    "rules_and_policies": """
        SELECT 'rule', tablename, rulename, definition FROM pg_rules
        WHERE schemaname = %(schema)s
        UNION ALL
        SELECT 'policy', tablename, policyname, qual FROM pg_policies
        WHERE schemaname = %(schema)s ORDER BY 1, 2, 3""",
}
# What migrations write into a new schema, compared row for row.
ROWS = {
    "django_migrations": "SELECT app, name FROM {s}.django_migrations ORDER BY 1, 2",
    "django_content_type": "SELECT * FROM {s}.django_content_type ORDER BY id",
    "auth_permission": "SELECT * FROM {s}.auth_permission ORDER BY id",
    "auth_group": "SELECT * FROM {s}.auth_group ORDER BY id",
}


def _catalog(schema: str) -> dict[str, Any]:
    """Everything a schema is made of, with its own name replaced by "S"."""
    own_name = re.compile(rf'(?<![\w$])"?{re.escape(schema)}"?(?![\w$])')
    result: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for part, query in CATALOG.items():
            cursor.execute(query, {"schema": schema})
            result[part] = [
                tuple(own_name.sub("S", v) if isinstance(v, str) else v for v in row)
                for row in cursor.fetchall()
            ]
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            [schema],
        )
        tables = sorted(row[0] for row in cursor.fetchall())
        counts = {}
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
            counts[table] = cursor.fetchone()[0]
        result["row_counts"] = counts
        for table, query in ROWS.items():
            cursor.execute(query.format(s=f'"{schema}"'))
            result[f"rows:{table}"] = cursor.fetchall()
    return result


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """{part: {"only in first": [...], "only in second": [...]}} where they differ."""
    out = {}
    for part in a:
        left, right = a[part], b[part]
        if isinstance(left, dict):
            left, right = list(left.items()), list(right.items())
        if left != right:
            out[part] = {
                "only in first": [row for row in left if row not in right],
                "only in second": [row for row in right if row not in left],
            }
    return out


def _create(slug: str, **extra: Any) -> Organization:
    return tenant_create(
        slug=slug,
        name=slug.title(),
        admin_email=f"admin@{slug}.test",
        domains=[f"{slug.replace('_', '-')}.test"],
        admin_password=PASSWORD,
        **extra,
    ).organization


def _schema_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
        return cursor.fetchone() is not None


def test_a_cloned_schema_is_indistinguishable_from_a_migrated_one(db, settings):
    template = settings.TENANT_TEMPLATE_SCHEMA
    assert template == "tenant_template"
    settings.TENANT_TEMPLATE_SCHEMA = ""
    _create("tplcmp_migrated")
    settings.TENANT_TEMPLATE_SCHEMA = template
    _create("tplcmp_cloned")

    migrated = _catalog("tplcmp_migrated")
    cloned = _catalog("tplcmp_cloned")

    differences = _differences(migrated, cloned)
    assert differences == {}, pprint.pformat(differences, width=120)
    # The comparison saw the objects that matter, not two empty lists.
    relations = {row[0]: row for row in cloned["relations"]}
    assert relations["accounts_throttlewindow"][2] == "u"  # UNLOGGED kept
    assert relations["audit_auditevent"][2] == "p"
    assert len(cloned["indexes"]) > 50
    assert {row[1] for row in cloned["triggers"]} == {
        "audit_auditevent_append_only",
        "audit_auditevent_no_truncate",
        "groups_group_weights",
        "groups_membership_weights",
    }
    # Triggers call the functions of their own schema ("S"), not the template's.
    assert {row[3] for row in cloned["triggers"]} == {"S"}
    assert {row[0] for row in cloned["functions"]} == {
        "audit_auditevent_append_only",
        "groups_check_weights",
    }
    graph, _ = _code_migrations()
    assert set(cloned["rows:django_migrations"]) == set(graph)
    assert [row[1] for row in cloned["rows:auth_group"]] == [
        "viewer",
        "editor",
        "admin",
    ]
    assert cloned["row_counts"]["auth_user"] == 1


def test_a_cloned_schema_numbers_its_rows_like_a_migrated_one(db, settings):
    template = settings.TENANT_TEMPLATE_SCHEMA
    settings.TENANT_TEMPLATE_SCHEMA = ""
    _create("tplseq_migrated")
    settings.TENANT_TEMPLATE_SCHEMA = template
    _create("tplseq_cloned")

    ids = {}
    for slug in ("tplseq_migrated", "tplseq_cloned"):
        with schema_context(slug):
            ids[slug] = (
                Group.objects.create(name="extra").pk,
                ThrottleWindow.objects.create(scope="s", ident="i", window_start=0).pk,
                ThrottleWindow.objects.create(scope="s", ident="j", window_start=0).pk,
            )

    assert ids["tplseq_cloned"] == ids["tplseq_migrated"] == (4, 1, 2)
    # The template itself is untouched: no admin user, no extra group.
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{template}".auth_user')
        assert cursor.fetchone()[0] == 0
        cursor.execute(f'SELECT count(*) FROM "{template}".auth_group')
        assert cursor.fetchone()[0] == 3
        cursor.execute(f'SELECT count(*) FROM "{template}".accounts_throttlewindow')
        assert cursor.fetchone()[0] == 0


def test_a_cloned_tenant_logs_in_creates_a_group_and_predicts(db, trained):
    template = settings.TENANT_TEMPLATE_SCHEMA
    _create("tplwork")
    host = "tplwork.test"

    login = Client(HTTP_HOST=host).post(
        "/accounts/login/", {"username": "admin@tplwork.test", "password": PASSWORD}
    )
    with schema_context("tplwork"):
        group = seed_demo_content(actor="test")
        _, key = api_key_create(name="t", scope="predict", actor="test")
    response = APIClient(HTTP_HOST=host).post(
        f"/api/v1/groups/{DEMO_GROUP}/predict/",
        {"inputs": demo_rows(1)[0]},
        format="json",
        HTTP_AUTHORIZATION=f"Api-Key {key}",
    )

    assert login.status_code == 302
    assert response.status_code == 200, response.content
    assert response.json()["outputs"]["prediction"] in (0, 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT count(*) FROM "tplwork".inference_log_g{group.pk} '
            "WHERE request_id = %s",
            [response.json()["request_id"]],
        )
        assert cursor.fetchone()[0] == 1
        # The group's runtime tables went to the tenant, none to the template.
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relname LIKE 'inference_log%%'",
            [template],
        )
        assert cursor.fetchone()[0] == 0
    assert tenant_template_state(name=template).current


def test_a_template_missing_a_migration_is_rebuilt_before_the_next_clone(db):
    template = settings.TENANT_TEMPLATE_SCHEMA
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{template}".django_migrations '
            "WHERE app = 'accounts' AND name = '0003_throttle_window'"
        )
    stale = tenant_template_state(name=template)

    _create("tplstale")

    assert stale.exists and not stale.current
    assert stale.missing == ("accounts.0003_throttle_window",)
    assert tenant_template_state(name=template).current
    graph, _ = _code_migrations()
    assert set(_catalog("tplstale")["rows:django_migrations"]) == set(graph)
    with schema_context("tplstale"):
        assert ThrottleWindow.objects.create(scope="s", ident="i", window_start=0)


def test_a_template_with_an_unknown_migration_or_none_at_all_is_rebuilt(db):
    template = settings.TENANT_TEMPLATE_SCHEMA
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{template}".django_migrations (app, name, applied) '
            "VALUES ('accounts', '0099_from_newer_code', now())"
        )
    ahead = tenant_template_state(name=template)
    _create("tplahead")
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{template}" CASCADE')
    dropped = tenant_template_state(name=template)
    _create("tpldropped")

    assert ahead.unknown == ("accounts.0099_from_newer_code",)
    assert not dropped.exists and not dropped.current
    assert tenant_template_state(name=template).current
    assert _catalog("tplahead")["relations"] == _catalog("tpldropped")["relations"]


def test_migrations_compare_counts_a_squash_when_everything_it_replaces_is_applied():
    graph = {
        ("a", "0001_squashed_0002"): frozenset({("a", "0001"), ("a", "0002")}),
        ("a", "0003"): frozenset(),
    }
    known = frozenset({("a", "0001"), ("a", "0002"), ("a", "0003"), *graph})

    assert migrations_compare(
        applied={("a", "0001"), ("a", "0002"), ("a", "0003")}, graph=graph, known=known
    ) == ((), ())
    assert migrations_compare(
        applied={("a", "0001"), ("b", "0001")}, graph=graph, known=known
    ) == (("a.0001_squashed_0002", "a.0003"), ("b.0001",))


def test_two_tenants_created_at_once_both_succeed_and_build_the_template_once(
    django_db_setup, django_db_blocker, caplog
):
    slugs = ["tplconc_a", "tplconc_b"]
    errors: list[BaseException] = []
    start = threading.Barrier(len(slugs))

    def create(slug: str) -> None:
        try:
            start.wait(timeout=30)
            _create(slug)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    template = settings.TENANT_TEMPLATE_SCHEMA
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{template}" CASCADE')
        caplog.set_level(logging.INFO, logger="apps.tenants.services")
        threads = [threading.Thread(target=create, args=(s,)) for s in slugs]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            created = sorted(
                Organization.objects.filter(schema_name__in=slugs).values_list(
                    "schema_name", flat=True
                )
            )
            migrations = {
                slug: set(_catalog(slug)["rows:django_migrations"]) for slug in created
            }
            current = tenant_template_state(name=template).current
        finally:
            for slug in slugs:
                if Organization.objects.filter(schema_name=slug).exists():
                    tenant_delete(slug=slug)

    assert not errors, errors
    assert created == slugs
    graph, _ = _code_migrations()
    assert migrations == {slug: set(graph) for slug in slugs}
    assert current
    built = [r for r in caplog.records if "built" in r.getMessage()]
    assert len(built) == 1, [r.getMessage() for r in built]


def test_the_template_is_no_tenant_and_cannot_be_taken(db, capsys):
    template = settings.TENANT_TEMPLATE_SCHEMA
    tenant_template_ensure()
    call_command("list_tenants")
    listed = capsys.readouterr().out

    assert _schema_exists(template)
    assert not Organization.objects.filter(schema_name=template).exists()
    assert not Domain.objects.filter(tenant__schema_name=template).exists()
    assert template not in listed and "alpha" in listed
    with pytest.raises(ApplicationError, match="A tenant slug is"):
        _create(template)


@pytest.mark.parametrize("name", ["public", "alpha", "Bad-Name"])
def test_a_template_named_like_public_or_a_tenant_is_refused(db, settings, name):
    settings.TENANT_TEMPLATE_SCHEMA = name

    with pytest.raises(ImproperlyConfigured, match=f"TENANT_TEMPLATE_SCHEMA '{name}'"):
        _create("tplrefused")
    with pytest.raises(ImproperlyConfigured, match="not public, not a tenant"):
        tenant_template_ensure(rebuild=True)

    assert not _schema_exists("tplrefused")
    with schema_context("alpha"):
        assert Group.objects.filter(name="admin").exists()


def test_tenant_template_command_checks_rebuilds_and_drops(db, capsys):
    template = settings.TENANT_TEMPLATE_SCHEMA
    call_command("tenant_template", "--check")
    assert f"Tenant template '{template}' is current." in capsys.readouterr().out

    call_command("tenant_template", "--drop")
    assert not _schema_exists(template)
    with pytest.raises(CommandError, match="is not current: missing"):
        call_command("tenant_template", "--check")

    call_command("tenant_template")
    call_command("tenant_template", "--rebuild")
    assert tenant_template_state(name=template).current
