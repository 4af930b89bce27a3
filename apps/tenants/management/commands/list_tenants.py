from django.core.management.base import BaseCommand

from apps.tenants.models import Organization


class Command(BaseCommand):
    help = "List tenants with their domains."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        orgs = Organization.objects.prefetch_related("domains").order_by("schema_name")
        for org in orgs:
            domains = ", ".join(
                f"{d.domain}{' (primary)' if d.is_primary else ''}"
                for d in org.domains.all()
            )
            self.stdout.write(f"{org.schema_name}\t{org.name}\t{domains}")
