"""`migrate_schemas` hands Django's `migrate` only the schemas that lack a migration."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.migration_executors.standard import StandardExecutor


@pytest.fixture
def handed(monkeypatch):  # type: ignore[no-untyped-def]
    """The schema lists the executor passes on to django-tenants (nothing runs)."""
    calls: list[list[str]] = []

    def capture(self, tenants=None):  # type: ignore[no-untyped-def]
        calls.append(list(tenants or []))

    monkeypatch.setattr(StandardExecutor, "run_migrations", capture)
    return calls


def _forget_last_migration(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{schema}".django_migrations WHERE id = '
            f'(SELECT max(id) FROM "{schema}".django_migrations)'
        )


def test_current_schemas_are_skipped_and_a_schema_behind_is_migrated(
    db, tenant_a, tenant_b, handed
):
    _forget_last_migration(tenant_b.schema_name)

    call_command("migrate_schemas", interactive=False, verbosity=0)

    public, tenants = handed
    assert public == ["public"]
    assert tenant_b.schema_name in tenants
    assert tenant_a.schema_name not in tenants


@pytest.mark.parametrize(
    "options",
    [{"fake_initial": True}, {"plan": True}, {"app_label": "groups"}],
)
def test_a_specific_migrate_hands_over_every_schema(db, tenant_a, handed, options):
    call_command(
        "migrate_schemas", tenant=True, interactive=False, verbosity=0, **options
    )

    [tenants] = handed
    assert tenant_a.schema_name in tenants


def test_the_skip_is_reported(db, tenant_a, handed, capsys):
    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=1)

    assert "schemas already have every migration: skipped" in capsys.readouterr().out
    assert handed == [[]] or tenant_a.schema_name not in handed[0]
