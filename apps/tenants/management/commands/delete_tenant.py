from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ApplicationError
from apps.tenants.services import tenant_delete


class Command(BaseCommand):
    help = "Delete a tenant: drops its schema with every row in it. Needs --yes."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("slug")
        parser.add_argument("--yes", action="store_true", help="confirm the deletion")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if not options["yes"]:
            raise CommandError(
                f"This drops schema '{options['slug']}' and all its data. "
                "Re-run with --yes to confirm."
            )
        try:
            tenant_delete(slug=options["slug"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Deleted tenant '{options['slug']}'."))
