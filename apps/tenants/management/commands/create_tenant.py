from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ApplicationError
from apps.tenants.services import tenant_create, tenant_url


class Command(BaseCommand):
    help = "Create a tenant: its schema (migrated), domain and first admin user."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("slug", help="schema name: lowercase letters, digits, _")
        parser.add_argument("--name", required=True, help="display name")
        parser.add_argument(
            "--domain",
            action="append",
            dest="domains",
            help="host name (repeatable); default <slug>.localhost",
        )
        parser.add_argument("--admin-email", required=True)

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            created = tenant_create(
                slug=options["slug"],
                name=options["name"],
                admin_email=options["admin_email"],
                domains=options["domains"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        org = created.organization
        self.stdout.write(self.style.SUCCESS(f"Created tenant '{org.schema_name}'."))
        self.stdout.write(f"  URL:      {tenant_url(org)}")
        self.stdout.write(f"  Admin:    {created.admin_email}")
        self.stdout.write(
            f"  Password: {created.admin_password}  (shown once; change it)"
        )
