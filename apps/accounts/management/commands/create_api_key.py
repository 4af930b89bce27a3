from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from apps.accounts.roles import Scope
from apps.accounts.services import api_key_create
from apps.core.errors import ApplicationError
from apps.tenants.models import Organization


class Command(BaseCommand):
    help = "Issue an API key for a tenant and print it once (it is stored hashed)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("tenant", help="tenant slug (schema name)")
        parser.add_argument("name", help="what uses the key, e.g. ci")
        parser.add_argument(
            "--scope",
            choices=[Scope.MANAGE, Scope.PREDICT],
            default=Scope.MANAGE,
            help="manage: the whole API (default); predict: predictions and feedback",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        slug = options["tenant"]
        if (
            slug == "public"
            or not Organization.objects.filter(schema_name=slug).exists()
        ):
            raise CommandError(f"No tenant '{slug}'.")
        with schema_context(slug):
            try:
                api_key, raw = api_key_create(
                    name=options["name"],
                    scope=options["scope"],
                    actor="command:create_api_key",
                )
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
        self.stderr.write(
            f"Issued '{api_key.name}' ({api_key.scope}) for {slug}, prefix "
            f"{api_key.prefix}. Store the key now: it is not shown again."
        )
        self.stdout.write(raw)
