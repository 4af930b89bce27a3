"""`manage.py backup_tenant <slug> <dir>`: one tenant's schema (pg_dump), its
organisation and domain rows, its media and its archives, into a directory that
`restore_tenant <dir>` puts back (in this or a fresh database)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from apps.tenants.models import Domain, Organization

FORMAT = 1


def server_major() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        return int(cursor.fetchone()[0]) // 10000


def pg_tool(name: str) -> str:
    """The pg_dump/pg_restore to use: PG_BIN_DIR if set, else the first of the
    embedded server's and PATH's whose major version is at least the server's."""
    if os.environ.get("PG_BIN_DIR"):
        return str(Path(os.environ["PG_BIN_DIR"]) / name)
    candidates = []
    try:
        import pgserver

        candidates.append(
            str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
        )
    except ImportError:  # pragma: no cover - pgserver is a pinned dependency
        pass
    if found := shutil.which(name):
        candidates.append(found)
    need = server_major()
    for path in candidates:
        if not Path(path).exists():
            continue
        out = subprocess.run(  # noqa: S603 - fixed binary, no shell
            [path, "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"(\d+)\.", out)
        if match and int(match.group(1)) >= need:
            return path
    raise CommandError(f"No {name} of PostgreSQL {need} or newer: set PG_BIN_DIR.")


def libpq_args() -> tuple[list[str], dict[str, str]]:
    """Connection arguments and environment (password) for the pg_* tools."""
    db = connection.settings_dict
    args = ["--dbname", db["NAME"]]
    if db.get("HOST"):
        args += ["--host", db["HOST"]]
    if db.get("PORT"):
        args += ["--port", str(db["PORT"])]
    if db.get("USER"):
        args += ["--username", db["USER"]]
    env = {**os.environ}
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    return args, env


def copy_tree(src: Path, dst: Path) -> int:
    """Copy a directory if it exists; returns the number of files copied."""
    if not src.is_dir():
        return 0
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return sum(1 for p in dst.rglob("*") if p.is_file())


class Command(BaseCommand):
    help = "Back up one tenant (schema, organisation, domains, media, archives)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("tenant")
        parser.add_argument("directory", help="created; must be empty if it exists")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["tenant"]
        org = Organization.objects.filter(schema_name=slug).first()
        if slug == "public" or org is None:
            raise CommandError(f"No tenant '{slug}'.")
        out = Path(options["directory"])
        if out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} is not empty.")
        out.mkdir(parents=True, exist_ok=True)

        conn_args, env = libpq_args()
        dump = subprocess.run(  # noqa: S603 - fixed binary and arguments, no shell
            [
                pg_tool("pg_dump"),
                *conn_args,
                "--format=custom",
                "--schema",
                slug,
                "--no-owner",
                "--no-privileges",
                "--file",
                str(out / "schema.dump"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if dump.returncode != 0:
            raise CommandError(f"pg_dump failed: {dump.stderr.strip()}")
        media = copy_tree(Path(settings.MEDIA_ROOT) / slug, out / "media")
        archive = copy_tree(Path(settings.ARCHIVE_ROOT) / slug, out / "archive")
        manifest = {
            "format": FORMAT,
            "schema": slug,
            "name": org.name,
            "created_at": org.created_at.isoformat(),
            "domains": [
                {"domain": d.domain, "is_primary": d.is_primary}
                for d in Domain.objects.filter(tenant=org).order_by("domain")
            ],
            "backed_up_at": timezone.now().isoformat(),
            "server_major": server_major(),
            "files": {"media": media, "archive": archive},
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up '{slug}' to {out} (schema dump, {media} media and "
                f"{archive} archive files)."
            )
        )
