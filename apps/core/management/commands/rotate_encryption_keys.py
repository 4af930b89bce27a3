"""Re-encrypt every stored secret under the newest key of FIELD_ENCRYPTION_KEYS.

Safe to interrupt and re-run: each batch commits on its own, rows already under the
newest key are skipped, and each row is swapped only if it still holds the token that
was read (a concurrent write is never overwritten).
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context

from apps.core import crypto
from apps.core.crypto import EncryptedTextField
from apps.tenants.models import Organization


def encrypted_columns() -> list[tuple[str, str, str]]:
    """(table, primary key column, encrypted column) for every EncryptedTextField."""
    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                pk_column = str(model._meta.pk.column)  # type: ignore[union-attr]
                found.append((model._meta.db_table, pk_column, str(field.column)))
    return found


def _table_exists(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [connection.ops.quote_name(table)]
        )
        return bool(cursor.fetchone()[0])


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the newest encryption key."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--max-rows",
            type=int,
            default=None,
            help="stop after rotating this many rows (spread the work over runs)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count only")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        budget = options["max_rows"]
        totals = {"rotated": 0, "current": 0}
        tenants = Organization.objects.exclude(schema_name=get_public_schema_name())
        schemas = [
            get_public_schema_name(),
            *tenants.order_by("schema_name").values_list("schema_name", flat=True),
        ]
        columns = encrypted_columns()
        for schema in schemas:
            with schema_context(schema):
                for table, pk, column in columns:
                    if not _table_exists(table):
                        continue
                    rotated, current = self._rotate_table(
                        table,
                        pk,
                        column,
                        options["batch_size"],
                        budget,
                        options["dry_run"],
                    )
                    totals["rotated"] += rotated
                    totals["current"] += current
                    if budget is not None:
                        budget -= rotated
                    if rotated or current:
                        self.stdout.write(
                            f"{schema}.{table}.{column}: {rotated} rotated, "
                            f"{current} already current"
                        )
                    if budget is not None and budget <= 0:
                        self.stdout.write(
                            "Stopped at --max-rows; run again to continue."
                        )
                        return
        verb = "would rotate" if options["dry_run"] else "rotated"
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {verb} {totals['rotated']}, {totals['current']} already current."
            )
        )

    def _rotate_table(self, table, pk, column, batch_size, budget, dry_run):  # type: ignore[no-untyped-def]
        q = connection.ops.quote_name
        rotated = current = 0
        last_pk = None
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                where = f"{q(column)} <> ''" + (
                    f" AND {q(pk)} > %s" if last_pk is not None else ""
                )
                cursor.execute(
                    f"SELECT {q(pk)}, {q(column)} FROM {q(table)} WHERE {where} "  # noqa: S608
                    f"ORDER BY {q(pk)} LIMIT %s",
                    ([last_pk] if last_pk is not None else []) + [batch_size],
                )
                rows = cursor.fetchall()
                if not rows:
                    return rotated, current
                for row_pk, token in rows:
                    last_pk = row_pk
                    if crypto.is_encrypted_with_primary(token):
                        current += 1
                        continue
                    if budget is not None and rotated >= budget:
                        return rotated, current
                    new_token = crypto.rotate(
                        token
                    )  # raises DecryptionError: never skip silently
                    if not dry_run:
                        cursor.execute(
                            f"UPDATE {q(table)} SET {q(column)} = %s "  # noqa: S608
                            f"WHERE {q(pk)} = %s AND {q(column)} = %s",
                            [new_token, row_pk, token],
                        )
                    rotated += 1
