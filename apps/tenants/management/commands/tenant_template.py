from django.core.management.base import BaseCommand, CommandError

from apps.tenants.services import (
    template_schema_name,
    tenant_template_drop,
    tenant_template_ensure,
    tenant_template_state,
)


class Command(BaseCommand):
    help = (
        "The schema new tenants are cloned from (TENANT_TEMPLATE_SCHEMA): build or "
        "migrate it unless current. Run after `migrate_schemas` on every release."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--check",
            action="store_true",
            help="change nothing; exit 1 unless the template is current",
        )
        action.add_argument(
            "--rebuild", action="store_true", help="drop and build it again"
        )
        action.add_argument(
            "--drop", action="store_true", help="remove it (rebuilt when needed)"
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        name = template_schema_name()
        if not name:
            self.stdout.write("TENANT_TEMPLATE_SCHEMA is empty: tenants are migrated.")
            return
        if options["drop"]:
            tenant_template_drop()
            self.stdout.write(f"Dropped tenant template '{name}'.")
            return
        if options["check"]:
            state = tenant_template_state(name=name)
            if not state.current:
                raise CommandError(
                    f"Tenant template '{name}' is not current: " + state.describe()
                )
        else:
            tenant_template_ensure(rebuild=options["rebuild"])
        if options["verbosity"]:
            self.stdout.write(f"Tenant template '{name}' is current.")
