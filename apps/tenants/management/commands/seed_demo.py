import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from apps.accounts.models import ApiKey
from apps.accounts.services import (
    api_key_create,
    api_key_revoke,
    user_create,
    user_set_password,
)
from apps.tenants.demo import demo_rows, seed_demo_content
from apps.tenants.models import Domain, Organization
from apps.tenants.services import public_tenant_ensure, tenant_create, tenant_url

DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.localhost"
DEMO_KEY_NAME = "demo (make run)"
# The demo tenant also answers on localhost/127.0.0.1 so that Python clients, which
# do not resolve *.localhost, reach it without editing /etc/hosts.
DEMO_DOMAINS = ["demo.localhost", "localhost", "127.0.0.1"]


class Command(BaseCommand):
    help = "Create (or refresh) the public tenant and the 'demo' tenant. Idempotent."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        password = settings.DEMO_ADMIN_PASSWORD
        if not password:
            raise CommandError("DEMO_ADMIN_PASSWORD is unset (make .env generates it).")
        public_tenant_ensure()
        org = Organization.objects.filter(schema_name=DEMO_SLUG).first()
        if org is None:
            org = tenant_create(
                slug=DEMO_SLUG,
                name="Demo",
                admin_email=DEMO_EMAIL,
                domains=DEMO_DOMAINS,
                admin_password=password,
            ).organization
            self.stdout.write(self.style.SUCCESS("Created the demo tenant."))
        else:
            for host in DEMO_DOMAINS:
                Domain.objects.get_or_create(
                    domain=host, defaults={"tenant": org, "is_primary": False}
                )
            with schema_context(DEMO_SLUG):
                from django.contrib.auth.models import User

                if User.objects.filter(username=DEMO_EMAIL).exists():
                    user_set_password(email=DEMO_EMAIL, password=password)
                else:
                    user_create(email=DEMO_EMAIL, role="admin", password=password)
            self.stdout.write(
                "Demo tenant present; admin password refreshed from .env."
            )
        with schema_context(DEMO_SLUG):
            group = seed_demo_content()
            # A fresh predict key each run: keys are stored hashed and cannot be shown
            # again, so the one printed last time is revoked.
            for old in ApiKey.objects.filter(name=DEMO_KEY_NAME, revoked=False):
                api_key_revoke(prefix=old.prefix, actor="command:seed_demo")
            _, demo_key = api_key_create(
                name=DEMO_KEY_NAME, scope="predict", actor="command:seed_demo"
            )
        self.stdout.write(f"  App:      {tenant_url(org)}")
        self.stdout.write(f"  Admin:    {tenant_url(org, '/admin/')}")
        self.stdout.write(f"  API docs: {tenant_url(org, '/api/docs/')}")
        self.stdout.write(f"  Sign in:  {DEMO_EMAIL} / {password}")
        self.stdout.write(f"  API key:  {demo_key}  (scope predict)")
        self.stdout.write(
            f"  Try:      curl -H 'Authorization: Api-Key {demo_key}' "
            f"-H 'Content-Type: application/json' "
            f"-d '{{\"inputs\": {json.dumps(demo_rows(1)[0])}}}' "
            f"{tenant_url(org, f'/api/v1/groups/{group.slug}/predict/')}"
        )
