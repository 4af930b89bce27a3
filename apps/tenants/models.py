from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Organization(TenantMixin):
    """A customer organisation: one PostgreSQL schema named after its slug."""

    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = True

    class Meta:
        ordering = ["schema_name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"

    @property
    def slug(self) -> str:
        return self.schema_name


class Domain(DomainMixin):
    """A host name that selects its tenant."""

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain
