from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import get_public_schema_name, schema_context

from apps.core.errors import NotFoundError
from apps.inference.retention import ArchiveResult, apply_retention_tenant
from apps.tenants.models import Organization


class Command(BaseCommand):
    help = (
        "Archive every inference partition past its group's retention to Parquet, "
        "verify it, then drop it. One line per partition, then totals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report only; change nothing."
        )
        parser.add_argument("--tenant", help="Only this tenant (its slug).")
        parser.add_argument("--group", help="Only this group (its slug).")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        dry_run: bool = options["dry_run"]
        tenants = Organization.objects.exclude(schema_name=get_public_schema_name())
        if options["tenant"]:
            tenants = tenants.filter(schema_name=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"No tenant '{options['tenant']}'.")
        results: list[ArchiveResult] = []
        matched = 0
        self.stdout.write("tenant\tgroup\tday\trows\tfile\tresult")
        for schema in tenants.order_by("schema_name").values_list(
            "schema_name", flat=True
        ):
            with schema_context(schema):
                try:
                    found = apply_retention_tenant(
                        dry_run=dry_run, group_slug=options["group"]
                    )
                except NotFoundError:
                    if options["tenant"]:
                        raise CommandError(
                            f"No group '{options['group']}' with an inference "
                            f"table in tenant '{schema}'."
                        ) from None
                    continue  # --group names a group of some other tenant
            matched += 1
            for result in found:
                self.stdout.write(self._line(result))
            results += found
        if options["group"] and not matched:
            raise CommandError(
                f"No group '{options['group']}' with an inference table."
            )
        self._totals(results, dry_run)

    def _line(self, r: ArchiveResult) -> str:
        if r.action == "failed":
            outcome = f"FAILED: {r.error}"
        elif r.action == "would_archive":
            outcome = "would archive" + (" (file exists: merged)" if r.reused else "")
        else:
            outcome = "archived" + (" (existing file reused)" if r.reused else "")
        path = Path(settings.ARCHIVE_ROOT).resolve() / r.path if r.path else "-"
        return (
            f"{r.schema}\t{r.group_slug}\t{r.day:%Y-%m-%d}\t{r.rows}\t{path}\t{outcome}"
        )

    def _totals(self, results: list[ArchiveResult], dry_run: bool) -> None:
        done = [r for r in results if r.action != "failed"]
        failed = [r for r in results if r.action == "failed"]
        rows = sum(r.rows for r in done)
        verb = "would archive" if dry_run else "archived"
        self.stdout.write(
            f"total: {verb} {len(done)} partition(s), {rows} row(s); "
            f"{len(failed)} failed"
        )
        if failed:
            raise CommandError(
                f"{len(failed)} partition(s) could not be archived and were kept."
            )
