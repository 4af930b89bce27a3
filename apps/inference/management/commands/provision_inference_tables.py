from django.core.management.base import BaseCommand
from django_tenants.utils import get_public_schema_name, schema_context

from apps.groups.models import ModelGroup
from apps.inference.services import inference_table_ensure
from apps.tenants.models import Organization


class Command(BaseCommand):
    help = "Create missing inference tables and partitions ahead, in every tenant. Idempotent."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        tenants = Organization.objects.exclude(schema_name=get_public_schema_name())
        for schema in tenants.order_by("schema_name").values_list(
            "schema_name", flat=True
        ):
            with schema_context(schema):
                groups = ModelGroup.objects.filter(status=ModelGroup.Status.ACTIVE)
                for group in groups.order_by("pk"):
                    record = inference_table_ensure(group=group)
                    self.stdout.write(f"{schema}\t{group.slug}\t{record.name}")
