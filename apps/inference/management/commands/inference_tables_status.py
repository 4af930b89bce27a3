from django.core.management.base import BaseCommand
from django_tenants.utils import get_public_schema_name, schema_context

from apps.inference import tables
from apps.inference.models import InferenceTable
from apps.tenants.models import Organization


class Command(BaseCommand):
    help = "Each tenant's inference tables: partitions, default-partition rows, size."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        self.stdout.write(
            "tenant\tgroup\ttable\tpartitions\tfirst\tlast\tdefault_rows\tbytes"
        )
        warn = False
        tenants = Organization.objects.exclude(schema_name=get_public_schema_name())
        for schema in tenants.order_by("schema_name").values_list(
            "schema_name", flat=True
        ):
            with schema_context(schema):
                for record in InferenceTable.objects.select_related("group").order_by(
                    "name"
                ):
                    s = tables.status(record.group_id)
                    warn = warn or s.default_rows > 0
                    self.stdout.write(
                        f"{schema}\t{record.group.slug}\t{s.name}\t{s.partitions}\t"
                        f"{s.first_day}\t{s.last_day}\t{s.default_rows}\t{s.total_bytes}"
                    )
        if warn:
            self.stderr.write(
                "Rows are sitting in a default partition: run provision_inference_tables."
            )
