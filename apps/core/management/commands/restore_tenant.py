"""`manage.py restore_tenant <dir>`: put back a tenant saved by `backup_tenant` —
its schema, organisation and domain rows, media and archives — then migrate the
schema to this code's migrations. Refuses to overwrite an existing tenant."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils.dateparse import parse_datetime

from apps.core.db import set_public_schema
from apps.core.management.commands.backup_tenant import (
    FORMAT,
    copy_tree,
    libpq_args,
    pg_tool,
)
from apps.tenants.models import Domain, Organization


class Command(BaseCommand):
    help = "Restore a tenant from a backup_tenant directory."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("directory")
        parser.add_argument(
            "--domain",
            action="append",
            default=[],
            help="serve the restored tenant on this host instead of the saved ones "
            "(repeatable; the first is primary), e.g. for a staging copy",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        src = Path(options["directory"])
        try:
            manifest = json.loads((src / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"{src} holds no readable manifest.json: {exc}") from exc
        if manifest.get("format") != FORMAT or not (src / "schema.dump").is_file():
            raise CommandError(f"{src} is not a backup_tenant directory.")
        slug = manifest["schema"]
        domains = [
            {"domain": d, "is_primary": i == 0} for i, d in enumerate(options["domain"])
        ] or manifest["domains"]

        set_public_schema()
        if Organization.objects.filter(schema_name=slug).exists():
            raise CommandError(f"Tenant '{slug}' already exists; delete it first.")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [slug])
            if cursor.fetchone():
                raise CommandError(f"Schema '{slug}' already exists in this database.")
        taken = Domain.objects.filter(domain__in=[d["domain"] for d in domains])
        if taken.exists():
            names = ", ".join(taken.values_list("domain", flat=True))
            raise CommandError(f"Domain already served by another tenant: {names}.")

        conn_args, env = libpq_args()
        restored = subprocess.run(  # noqa: S603 - fixed binary and arguments, no shell
            [
                pg_tool("pg_restore"),
                *conn_args,
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                str(src / "schema.dump"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if restored.returncode != 0:
            raise CommandError(f"pg_restore failed: {restored.stderr.strip()}")

        with transaction.atomic():
            org = Organization(schema_name=slug, name=manifest["name"])
            org.auto_create_schema = False  # the schema came from the dump
            org.save()
            created = parse_datetime(manifest.get("created_at") or "")
            if created:
                Organization.objects.filter(pk=org.pk).update(created_at=created)
            for d in domains:
                Domain.objects.create(
                    tenant=org, domain=d["domain"], is_primary=d["is_primary"]
                )
        media = copy_tree(src / "media", Path(settings.MEDIA_ROOT) / slug)
        archive = copy_tree(src / "archive", Path(settings.ARCHIVE_ROOT) / slug)
        # A backup from older code gets this code's migrations.
        call_command(
            "migrate_schemas", schema_name=slug, interactive=False, verbosity=0
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored '{slug}' ({', '.join(d['domain'] for d in domains)}) with "
                f"{media} media and {archive} archive files."
            )
        )
