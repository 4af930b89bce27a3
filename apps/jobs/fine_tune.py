"""Provider fine-tuning in the shape of OpenAI's API: upload the JSONL file, create
the provider's job, poll its status and events with backoff, mirror them into our Job,
cancel it, and register the fine-tuned model as a version on success."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from django.conf import settings

from apps.core.errors import ApplicationError
from apps.jobs import services
from apps.jobs.datasets import dataset_read_verified
from apps.jobs.models import Dataset, Job, JobEvent
from apps.jobs.trainers.sklearn import Reporter, Stop

logger = logging.getLogger(__name__)
# Provider status -> (our stage, progress floor).
STAGES = {
    "validating_files": ("provider: validating files", 5),
    "queued": ("provider: queued", 8),
    "running": ("provider: running", 10),
}
TERMINAL = {"succeeded", "failed", "cancelled"}


def poll_seconds() -> float:
    return float(getattr(settings, "JOB_FINE_TUNE_POLL_SECONDS", 10.0))


def poll_max_seconds() -> float:
    return float(getattr(settings, "JOB_FINE_TUNE_POLL_MAX_SECONDS", 120.0))


def task_budget_seconds() -> float:
    """How long one task polls before handing the job back to the queue (below the
    queue's task timeout)."""
    return float(getattr(settings, "JOB_FINE_TUNE_TASK_SECONDS", 300.0))


def _bad(field: str, message: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_config", fields={field: [message]})


def fine_tune_config_clean(
    config: dict[str, Any], *, dataset: Dataset
) -> dict[str, Any]:
    from apps.providers.connectors import connector_class
    from apps.providers.models import ProviderConfig

    if dataset.format != Dataset.Format.JSONL:
        raise _bad("dataset", "Fine-tuning needs a JSONL dataset of chat examples.")
    provider = ProviderConfig.objects.filter(pk=config.get("provider") or 0).first()
    if provider is None:
        raise _bad("provider", "Unknown provider.")
    if not getattr(connector_class(provider.kind), "supports_fine_tune", False):
        raise _bad("provider", f"{provider.kind} providers cannot fine-tune here.")
    base_model = str(config.get("base_model") or provider.default_model or "")
    if not base_model:
        raise _bad("base_model", "Required: the model to fine-tune.")
    epochs = (config.get("hyperparameters") or {}).get("n_epochs")
    if epochs is not None:
        try:
            epochs = int(epochs)
        except (TypeError, ValueError):
            raise _bad("hyperparameters.n_epochs", "An integer.") from None
        if not 1 <= epochs <= 50:
            raise _bad("hyperparameters.n_epochs", "Between 1 and 50.")
    return {
        "provider": provider.pk,
        "base_model": base_model,
        "hyperparameters": {"n_epochs": epochs} if epochs else {},
        "suffix": str(config.get("suffix") or "")[:18],
        "model_name": str(config.get("model_name") or "")[:200],
    }


def _provider(job: Job) -> Any:
    from apps.providers.models import ProviderConfig

    return ProviderConfig.objects.get(pk=job.config["provider"])


def _call(job: Job, fn: Any) -> Any:
    from apps.providers.resilience import call_provider

    return call_provider(_provider(job), fn)


def _upload(connector: Any, name: str, data: bytes) -> dict[str, Any]:
    upload = getattr(connector, "fine_tune_upload_file", None)
    if callable(upload):
        return dict(upload(name=name, data=data))
    # OpenAI-compatible connectors: the SDK's files endpoint, under the connector's
    # own error mapping.
    return dict(
        connector._call(
            lambda c: c.files.create(
                file=(name, data), purpose="fine-tune"
            ).model_dump()
        )
    )


def _start(job: Job) -> str:
    assert job.dataset is not None
    data = dataset_read_verified(job.dataset)
    uploaded = _call(job, lambda c: _upload(c, "training.jsonl", data))
    services.job_event_add(job=job, message=f"Uploaded training file {uploaded['id']}.")
    params: dict[str, Any] = {
        "model": job.config["base_model"],
        "training_file": uploaded["id"],
    }
    if job.config["hyperparameters"]:
        params["hyperparameters"] = job.config["hyperparameters"]
    if job.config["suffix"]:
        params["suffix"] = job.config["suffix"]
    created = _call(job, lambda c: c.fine_tune_create(**params))
    return str(created["id"])


def _mirror_events(job: Job, external_id: str, report: Reporter) -> None:
    events = _call(job, lambda c: c.fine_tune_events(external_id))
    seen = set(
        JobEvent.objects.filter(job=job, metrics__has_key="provider_event").values_list(
            "metrics__provider_event", flat=True
        )
    )
    for event in sorted(events, key=lambda e: e.get("created_at") or 0):
        if event.get("id") in seen:
            continue
        data = event.get("data") or {}
        metrics = {k: v for k, v in data.items() if isinstance(v, int | float)} | {
            "provider_event": event.get("id")
        }
        level = {"warn": "warn", "error": "error"}.get(event.get("level"), "info")
        services.job_event_add(
            job=job, message=str(event.get("message", "")), level=level, metrics=metrics
        )
        step, total = data.get("step"), data.get("total_steps")
        if isinstance(step, int) and data.get("train_loss") is not None:
            report.pending.append(
                {"step": step, "name": "train_loss", "value": float(data["train_loss"])}
            )
        if isinstance(step, int) and isinstance(total, int) and total:
            report.progress_hint = 10 + 85 * step / total


def _register(job: Job, *, status: dict[str, Any]) -> Any:
    from apps.registry.models import ModelVersion, RegisteredModel
    from apps.registry.services import model_create, version_create

    provider = _provider(job)
    actor = job.created_by or services.SYSTEM
    external = str(status["fine_tuned_model"])
    name = job.config["model_name"] or external
    model = RegisteredModel.objects.filter(name=name).first() or model_create(
        name=name, actor=actor, task_type="chat", owner=job.created_by
    )
    return version_create(
        model=model,
        source=ModelVersion.Source.FINE_TUNE,
        actor=actor,
        provider=provider,
        external_id=external,
        metadata={
            "model_info": {
                "provider": provider.kind,
                "external_id": external,
                "name": external,
                "task": "chat",
                "capabilities": ["chat"],
                "modalities": ["text"],
            },
            "training": {
                "dataset": f"{job.dataset.name if job.dataset else ''}",
                "framework": f"{provider.kind} fine-tuning",
            },
            "description": (
                f"Fine-tuned from {job.config['base_model']} by job {job.pk} "
                f"(provider job {job.external_id})."
            ),
        },
        lineage={
            "job_id": job.pk,
            "provider_job_id": job.external_id,
            "base_model": job.config["base_model"],
            "trained_tokens": status.get("trained_tokens"),
        },
    )


def run(job_id: int) -> str:
    """Claim, start (once) or resume, poll until the provider finishes or this task's
    budget runs out (then yield the job back to the queue)."""
    pending = Job.objects.filter(pk=job_id).first()
    if (
        pending is not None
        and pending.status == Job.Status.CANCELLING
        and pending.external_id
        and pending.lease_until is None  # no worker holds it
    ):
        _cancel_at_provider(pending)
    job = services.job_claim(job_id=job_id)
    if job is None:
        return "skipped"
    report = Reporter(job.pk, job.attempts)
    report.progress_hint = max(job.progress, 2)
    try:
        if not job.external_id:
            report.beat(2, "provider: uploading", "Uploading the training file.")
            external_id = _start(job)
            services.job_set_external_id(
                job_id=job.pk, attempt=report.attempt, external_id=external_id
            )
            job.external_id = external_id
            report.beat(5, "provider: created", f"Provider job {external_id} created.")
        return _poll(job, report)
    except Stop:
        current = Job.objects.get(pk=job_id)
        if current.status == Job.Status.CANCELLING and current.external_id:
            _cancel_at_provider(current)
        if current.status == Job.Status.CANCELLING:
            services.job_mark_cancelled(job_id=job_id, attempt=report.attempt)
            return "cancelled"
        return "lost"
    except ApplicationError as exc:  # ProviderError is one
        services.job_fail(
            job_id=job_id, attempt=report.attempt, code=exc.code, message=exc.message
        )
        return "failed"
    except Exception as exc:
        logger.exception("fine-tune job %s failed", job_id)
        services.job_fail(
            job_id=job_id,
            attempt=report.attempt,
            code="fine_tune_error",
            message=f"{type(exc).__name__}: {exc}",
        )
        return "failed"


def _cancel_at_provider(job: Job) -> None:
    try:
        _call(job, lambda c: c.fine_tune_cancel(job.external_id))
    except ApplicationError as exc:
        services.job_event_add(
            job=job,
            level="warn",
            message=f"The provider did not confirm the cancel: {exc.message}",
        )
    else:
        services.job_event_add(
            job=job, message=f"Provider job {job.external_id} cancelled."
        )


def _poll(job: Job, report: Reporter) -> str:
    started = time.monotonic()
    delay = poll_seconds()
    while True:
        status = _call(job, lambda c: c.fine_tune_status(job.external_id))
        state = str(status.get("status"))
        _mirror_events(job, job.external_id, report)
        stage, floor = STAGES.get(state, (f"provider: {state}", 10))
        report.beat(max(floor, report.progress_hint), stage, force=True)
        if state == "succeeded":
            version = services.job_succeed(
                job_id=job.pk,
                attempt=report.attempt,
                metrics={"trained_tokens": status.get("trained_tokens") or 0},
                register=functools.partial(_register, status=status),
            )
            return "succeeded" if version is not None else "lost"
        if state == "failed":
            error = status.get("error") or {}
            services.job_fail(
                job_id=job.pk,
                attempt=report.attempt,
                code=f"provider_{error.get('code') or 'failed'}",
                message=error.get("message") or "The provider's job failed.",
            )
            return "failed"
        if state == "cancelled":
            services.job_mark_cancelled(job_id=job.pk, attempt=report.attempt)
            return "cancelled"
        if time.monotonic() - started > task_budget_seconds():
            services.job_yield(
                job_id=job.pk, attempt=report.attempt, reason="provider: waiting"
            )
            return "yielded"
        time.sleep(delay)
        delay = min(delay * 1.5, poll_max_seconds())
