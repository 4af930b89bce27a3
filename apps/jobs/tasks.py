"""Worker entry points (thin: ids in, call a service)."""

from __future__ import annotations

from django_tenants.utils import get_public_schema_name

from apps.core.tasks import tenant_async


def job_run(job_id: int) -> str:
    """Tenant task: run one job (safe to run twice: only a queued job is claimed)."""
    from apps.jobs.models import Job

    kind = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
    if kind == Job.Kind.PROVIDER_FINE_TUNE:
        from apps.jobs import fine_tune

        return fine_tune.run(job_id)
    from apps.jobs.trainers.sklearn import train

    return train(job_id)


def jobs_reap() -> dict[str, int]:
    """Tenant task: requeue or fail jobs whose worker stopped reporting."""
    from apps.jobs.services import jobs_reap as reap

    return reap()


def jobs_reap_all_tenants() -> int:
    """Platform task (public): one reaper task per organisation."""
    from apps.tenants.models import Organization

    schemas = list(
        Organization.objects.exclude(schema_name=get_public_schema_name()).values_list(
            "schema_name", flat=True
        )
    )
    for schema in schemas:
        tenant_async(jobs_reap, schema_name=schema, on_commit=False)
    return len(schemas)
