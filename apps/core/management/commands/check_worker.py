from django.core.management.base import BaseCommand, CommandError
from django_q.tasks import result
from django_tenants.utils import schema_context

from apps.core.tasks import echo_schema, tenant_async
from apps.tenants.models import Organization


class Command(BaseCommand):
    help = "Round-trip a task through the worker in a tenant's schema and report it."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("tenant")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        slug = options["tenant"]
        if (
            slug == "public"
            or not Organization.objects.filter(schema_name=slug).exists()
        ):
            raise CommandError(f"No tenant '{slug}'.")
        with schema_context(slug):
            task_id = tenant_async(echo_schema, "check_worker", on_commit=False)
        outcome = result(task_id, wait=int(options["timeout"] * 1000))
        if outcome is None:
            raise CommandError(f"No worker answered within {options['timeout']} s.")
        if outcome.get("schema") != slug:
            raise CommandError(f"Task ran in the wrong schema: {outcome}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Worker ran the task in schema '{outcome['schema']}' "
                f"(search_path {outcome['search_path']})."
            )
        )
