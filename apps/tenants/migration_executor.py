"""`migrate_schemas` skips tenant schemas that already have every migration.

django-tenants runs Django's `migrate` in each tenant schema, even when there is
nothing to apply: about half a second per schema (loading the graph, rendering model
states, post-migrate signals), minutes for a deploy over hundreds of tenants. A schema
whose `django_migrations` already equals the code's migrations (one query, the same
comparison the tenant template is checked with) would do nothing but that, so it is
left out. A plain `--fake` skips them too (it would mark nothing): that is what
django-tenants runs on every new tenant's schema, a copy of the current template.
With an app label, a target migration, `--fake-initial`, `--plan`, `--check` or
`--prune`, every schema is handed to `migrate` as before. Wired in through django-tenants' `GET_EXECUTOR_FUNCTION`
setting, so both its standard and multiprocessing executors do it.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from django_tenants.migration_executors import get_executor
from django_tenants.migration_executors.base import MigrationExecutor

# migrate's options that ask for something other than "apply what is missing".
SPECIFIC_OPTIONS = (
    "app_label",
    "migration_name",
    "fake_initial",
    "plan",
    "check_unapplied",
    "prune",
)


def executor_for(codename: str | None = None) -> type[MigrationExecutor]:
    return _skipping(get_executor(codename))


@functools.cache
def _skipping(base: type[MigrationExecutor]) -> type[MigrationExecutor]:
    class SkipCurrentSchemas(base):  # type: ignore[valid-type, misc]
        def run_migrations(self, tenants: Any = None) -> Any:
            return super().run_migrations(tenants=self._needing(tenants))

        def _needing(self, tenants: Any) -> list[str]:
            schemas = list(tenants or [])
            if any(self.options.get(name) for name in SPECIFIC_OPTIONS):
                return schemas
            from apps.tenants.services import tenant_template_state

            needing = [
                schema
                for schema in schemas
                if schema == self.PUBLIC_SCHEMA_NAME
                or not tenant_template_state(name=schema).current
            ]
            skipped = len(schemas) - len(needing)
            if skipped and int(self.options.get("verbosity", 1)) >= 1:
                sys.stdout.write(
                    f"{skipped} of {len(schemas)} schemas already have every "
                    "migration: skipped\n"
                )
            return needing

    SkipCurrentSchemas.__name__ = f"SkipCurrent{base.__name__}"
    return SkipCurrentSchemas
