"""Every write to a job: create, submit, claim, heartbeat, finish, cancel, retry, reap.

A job's `attempts` is its fencing token: a worker passes the attempt it claimed, and
anything it reports after the job was reaped or claimed again is ignored. The job row
is locked while a version is registered, so a job registers at most one version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, ConflictError
from apps.core.tasks import tenant_async
from apps.jobs.models import Dataset, Job, JobEvent
from apps.jobs.trainers.config import training_config_clean
from apps.notifications.services import job_finished_on_commit

logger = logging.getLogger(__name__)
SYSTEM = "system"
MAX_HISTORY = 2000


def default_lease_seconds() -> int:
    return int(getattr(settings, "JOB_LEASE_SECONDS", 120))


def default_max_attempts() -> int:
    return int(getattr(settings, "JOB_MAX_ATTEMPTS", 3))


def job_event_add(
    *, job: Job, message: str, level: str = "info", metrics: dict | None = None
) -> JobEvent:
    return JobEvent.objects.create(
        job=job, level=level, message=message[:5000], metrics=metrics or {}
    )


def _transition(job: Job, status: str, actor: Any, **extra: Any) -> None:
    before = job.status
    job.status = status
    for key, value in extra.items():
        setattr(job, key, value)
    job.save()
    audit_record(
        actor=actor,
        action=f"job.{status}",
        obj=job,
        before={"status": before},
        after={"status": status, **{k: str(v) for k, v in extra.items()}},
    )


def _enqueue(job: Job) -> None:
    tenant_async("apps.jobs.tasks.job_run", job.pk)


def _locked(job_id: int) -> Job:
    return Job.objects.select_for_update().get(pk=job_id)


@transaction.atomic
def job_create(
    *,
    actor: Any,
    dataset: Dataset | None,
    config: dict[str, Any],
    kind: str = Job.Kind.LOCAL_TRAINING,
    idempotency_key: str | None = None,
    submit: bool = True,
    lease_seconds: int | None = None,
    max_attempts: int | None = None,
) -> tuple[Job, bool]:
    """A job with a checked configuration, queued unless `submit` is False.
    Returns (job, created): the same idempotency key gives back the same job."""
    assert_tenant_schema()
    if idempotency_key:
        existing = Job.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    if kind not in Job.Kind.values:
        raise ApplicationError(
            f"Unknown job kind '{kind}'.",
            code="invalid_config",
            fields={"kind": [f"One of {', '.join(Job.Kind.values)}."]},
        )
    if dataset is None:
        raise ApplicationError(
            "Training needs a dataset.",
            code="invalid_config",
            fields={"dataset": ["Required."]},
        )
    if kind == Job.Kind.PROVIDER_FINE_TUNE:
        from apps.jobs.fine_tune import fine_tune_config_clean

        clean = fine_tune_config_clean(config, dataset=dataset)
    elif dataset.format != Dataset.Format.CSV:
        raise ApplicationError(
            "Local training needs a CSV dataset.",
            code="invalid_config",
            fields={"dataset": ["A CSV dataset."]},
        )
    else:
        clean = training_config_clean(
            config, columns=dataset.columns, row_count=dataset.row_count
        )
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                dataset=dataset,
                config=clean,
                idempotency_key=idempotency_key or None,
                lease_seconds=lease_seconds or default_lease_seconds(),
                max_attempts=max_attempts or default_max_attempts(),
                created_by=actor if getattr(actor, "pk", None) else None,
            )
    except IntegrityError:  # the same key, created concurrently
        return Job.objects.get(idempotency_key=idempotency_key), False
    audit_record(
        actor=actor,
        action="job.create",
        obj=job,
        after={"kind": kind, "dataset": dataset.pk, "config": clean},
    )
    job_event_add(job=job, message="Job created.")
    if submit:
        job = job_submit(job=job, actor=actor)
    return job, True


@transaction.atomic
def job_submit(*, job: Job, actor: Any) -> Job:
    """draft → queued; the worker is asked after the transaction commits."""
    job = _locked(job.pk)
    if job.status != Job.Status.DRAFT:
        raise ConflictError(
            f"Only a draft can be submitted; this job is {job.status}.",
            fields={"status": [job.status]},
        )
    _transition(job, Job.Status.QUEUED, actor, stage="queued")
    job_event_add(job=job, message="Queued.")
    _enqueue(job)
    return job


@transaction.atomic
def job_cancel(*, job: Job, actor: Any) -> Job:
    """Queued (or draft) jobs stop now; a running job is asked to stop (cancelling)
    and the trainer stops at its next check."""
    job = _locked(job.pk)
    if job.status == Job.Status.QUEUED and job.external_id:
        # A provider's job exists: a worker cancels it there, then here.
        _transition(job, Job.Status.CANCELLING, actor, stage="cancelling")
        job_event_add(job=job, level="warn", message="Cancellation requested.")
        _enqueue(job)
    elif job.status in (Job.Status.DRAFT, Job.Status.QUEUED):
        _transition(
            job, Job.Status.CANCELLED, actor, stage="cancelled", finished_at=_now()
        )
        job_event_add(job=job, level="warn", message="Cancelled before it ran.")
    elif job.status == Job.Status.RUNNING:
        _transition(job, Job.Status.CANCELLING, actor, stage="cancelling")
        job_event_add(job=job, level="warn", message="Cancellation requested.")
    elif job.status != Job.Status.CANCELLING:
        raise ConflictError(
            f"A {job.status} job cannot be cancelled.",
            fields={"status": [job.status]},
        )
    return job


@transaction.atomic
def job_retry(*, job: Job, actor: Any) -> Job:
    """A failed or cancelled job is queued again with a fresh attempt budget."""
    job = _locked(job.pk)
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED):
        raise ConflictError(
            f"Only failed or cancelled jobs can be retried; this one is {job.status}.",
            fields={"status": [job.status]},
        )
    _transition(
        job,
        Job.Status.QUEUED,
        actor,
        stage="queued",
        progress=0,
        attempts=0,
        error_code="",
        error_message="",
        lease_until=None,
        finished_at=None,
    )
    job_event_add(job=job, message="Retry requested; queued.")
    _enqueue(job)
    return job


def _now() -> Any:
    return timezone.now()


@transaction.atomic
def job_claim(*, job_id: int) -> Job | None:
    """Worker side: take a queued job (running, attempt + 1, lease). None when there
    is nothing to do: the job is finished, cancelled or held by a live lease."""
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        return None
    if job.status == Job.Status.CANCELLING:
        _transition(
            job, Job.Status.CANCELLED, SYSTEM, stage="cancelled", finished_at=_now()
        )
        return None
    if job.status != Job.Status.QUEUED:
        return None
    if job.attempts >= job.max_attempts:
        _fail(job, "max_attempts", f"Gave up after {job.attempts} attempts.")
        return None
    now = _now()
    _transition(
        job,
        Job.Status.RUNNING,
        SYSTEM,
        attempts=job.attempts + 1,
        stage="starting",
        started_at=job.started_at or now,
        heartbeat_at=now,
        lease_until=now + timedelta(seconds=job.lease_seconds),
    )
    job_event_add(
        job=job, message=f"Attempt {job.attempts} of {job.max_attempts} started."
    )
    return job


@transaction.atomic
def job_heartbeat(
    *,
    job_id: int,
    attempt: int,
    progress: int | None = None,
    stage: str | None = None,
    message: str | None = None,
    level: str = "info",
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> bool:
    """Extend the lease and record progress. False when the worker must stop: the
    job was cancelled, reaped or claimed by a later attempt."""
    job = _locked(job_id)
    if job.status != Job.Status.RUNNING or job.attempts != attempt:
        return False
    now = _now()
    job.heartbeat_at = now
    job.lease_until = now + timedelta(seconds=job.lease_seconds)
    if progress is not None:
        job.progress = max(0, min(100, int(progress)))
    if stage is not None:
        job.stage = stage[:100]
    if history:
        job.metric_history = (job.metric_history + history)[-MAX_HISTORY:]
    job.save()
    if message:
        job_event_add(job=job, message=message, level=level, metrics=metrics)
    return True


@transaction.atomic
def job_set_external_id(*, job_id: int, attempt: int, external_id: str) -> bool:
    job = _locked(job_id)
    if job.status not in Job.ACTIVE or job.attempts != attempt:
        return False
    job.external_id = external_id[:200]
    job.save(update_fields=["external_id", "updated_at"])
    return True


@transaction.atomic
def job_yield(*, job_id: int, attempt: int, reason: str) -> bool:
    """A long wait (a provider's fine-tune) hands the job back to the queue without
    spending an attempt: the next task picks up where this one stopped."""
    job = _locked(job_id)
    if job.status != Job.Status.RUNNING or job.attempts != attempt:
        return False
    _transition(
        job,
        Job.Status.QUEUED,
        SYSTEM,
        attempts=job.attempts - 1,
        lease_until=None,
        stage=reason[:100],
    )
    _enqueue(job)
    return True


def _fail(job: Job, code: str, message: str) -> None:
    _transition(
        job,
        Job.Status.FAILED,
        SYSTEM,
        error_code=code[:60],
        error_message=message,
        stage="failed",
        lease_until=None,
        finished_at=_now(),
    )
    job_event_add(job=job, level="error", message=message)
    job_finished_on_commit(job=job)


@transaction.atomic
def job_fail(*, job_id: int, attempt: int, code: str, message: str) -> bool:
    job = _locked(job_id)
    if job.status not in Job.ACTIVE or job.attempts != attempt:
        return False
    _fail(job, code, message)
    return True


@transaction.atomic
def job_mark_cancelled(*, job_id: int, attempt: int) -> bool:
    job = _locked(job_id)
    if job.status not in Job.ACTIVE or job.attempts != attempt:
        return False
    _transition(
        job,
        Job.Status.CANCELLED,
        SYSTEM,
        stage="cancelled",
        lease_until=None,
        finished_at=_now(),
    )
    job_event_add(job=job, level="warn", message="Cancelled while running.")
    return True


def job_succeed(
    *,
    job_id: int,
    attempt: int,
    metrics: dict[str, Any],
    register: Callable[[Job], Any],
) -> Any:
    """Register the version (via `register(job)`) and finish the job, in one
    transaction that holds the job's lock. None when this attempt no longer owns it."""
    with transaction.atomic():
        job = _locked(job_id)
        if (
            job.status != Job.Status.RUNNING
            or job.attempts != attempt
            or job.result_version_id is not None
        ):
            return None
        version = register(job)
        _transition(
            job,
            Job.Status.SUCCEEDED,
            SYSTEM,
            result_version=version,
            progress=100,
            stage="done",
            metrics=metrics,
            lease_until=None,
            finished_at=_now(),
        )
        job_event_add(
            job=job,
            message=f"Registered {version.model.name} v{version.number}.",
            metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        )
        job_finished_on_commit(job=job)
    return version


def queued_stale_seconds() -> int:
    return int(getattr(settings, "JOB_QUEUED_STALE_SECONDS", 900))


def _requeue_stale_queued(now: Any) -> None:
    """A queued job nobody picked up for long (its task was lost) is enqueued again;
    a duplicate task is harmless because only one claim can win."""
    stale = Job.objects.filter(
        status=Job.Status.QUEUED,
        updated_at__lt=now - timedelta(seconds=queued_stale_seconds()),
    )
    for job in stale:
        with transaction.atomic():
            locked = (
                Job.objects.select_for_update(skip_locked=True)
                .filter(pk=job.pk, status=Job.Status.QUEUED)
                .first()
            )
            if locked is None:
                continue
            locked.save(update_fields=["updated_at"])
            job_event_add(
                job=locked, level="warn", message="Still queued; asked a worker again."
            )
            _enqueue(locked)


def jobs_reap(*, now: Any = None) -> dict[str, int]:
    """Jobs whose lease expired (their worker died): requeued while attempts remain,
    failed with a reason after that; cancelling jobs become cancelled."""
    assert_tenant_schema()
    now = now or _now()
    counts = {"requeued": 0, "failed": 0, "cancelled": 0}
    _requeue_stale_queued(now)
    ids = list(
        Job.objects.filter(
            status__in=(Job.Status.RUNNING, Job.Status.CANCELLING),
            lease_until__lt=now,
        ).values_list("pk", flat=True)
    )
    for job_id in ids:
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(skip_locked=True)
                .filter(
                    pk=job_id,
                    status__in=(Job.Status.RUNNING, Job.Status.CANCELLING),
                    lease_until__lt=now,
                )
                .first()
            )
            if job is None:
                continue
            expired = job.lease_until
            if job.status == Job.Status.CANCELLING:
                _transition(
                    job,
                    Job.Status.CANCELLED,
                    SYSTEM,
                    stage="cancelled",
                    lease_until=None,
                    finished_at=now,
                )
                counts["cancelled"] += 1
            elif job.attempts >= job.max_attempts:
                _fail(
                    job,
                    "lease_expired",
                    f"The worker stopped reporting (lease expired at "
                    f"{expired:%Y-%m-%d %H:%M:%S} UTC) on attempt {job.attempts} of "
                    f"{job.max_attempts}; no attempts left.",
                )
                counts["failed"] += 1
            else:
                _transition(
                    job, Job.Status.QUEUED, SYSTEM, stage="requeued", lease_until=None
                )
                job_event_add(
                    job=job,
                    level="warn",
                    message=(
                        f"The worker stopped reporting on attempt {job.attempts}; "
                        "requeued."
                    ),
                )
                _enqueue(job)
                counts["requeued"] += 1
    return counts
