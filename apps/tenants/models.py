from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Organization(TenantMixin):
    """A customer organisation: one PostgreSQL schema named after its slug."""

    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = True
    # A clone copies the template's rows too: what its migrations wrote (role groups,
    # content types, permissions, django_migrations), never tenant data.
    clone_mode = "DATA"
    # Set by `tenant_create` once the template is known to be current, under its lock.
    # Any other path that creates a schema migrates it instead of cloning unchecked.
    clone_template: str | None = None

    class Meta:
        ordering = ["schema_name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"

    @property
    def slug(self) -> str:
        return self.schema_name

    def get_base_schema(self) -> str | bool:
        """The template schema to clone (django-tenants' hook), or False to migrate."""
        return self.clone_template or False


class Domain(DomainMixin):
    """A host name that selects its tenant."""

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain
