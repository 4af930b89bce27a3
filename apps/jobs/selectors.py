"""Reads for jobs and datasets."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from apps.jobs.models import Dataset, Job, JobEvent


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Job.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Job.Kind.choices)

    class Meta:
        model = Job
        fields = ["status", "kind", "dataset"]


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related(
        "dataset", "result_version__model", "created_by"
    ).all()


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.all()


def job_events(*, job: Job) -> QuerySet[JobEvent]:
    return job.events.all()


def jobs_active_exist() -> bool:
    return Job.objects.filter(status__in=Job.ACTIVE).exists()
