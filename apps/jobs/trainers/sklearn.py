"""Local training with scikit-learn: load, split, fit (reporting as it goes),
evaluate on the holdout, explain (global SHAP), save with skops, register."""

from __future__ import annotations

import json
import logging
import time
import warnings
from typing import Any

import numpy as np
from django.core.files.base import ContentFile

from apps.core.errors import ApplicationError
from apps.jobs import services
from apps.jobs.datasets import dataset_load
from apps.jobs.models import Job

logger = logging.getLogger(__name__)
BACKGROUND_ROWS = 100
EXPLAIN_ROWS = 200
BEAT_SECONDS = 1.0


class Stop(Exception):
    """The job was cancelled, or this attempt lost its lease."""


class Reporter:
    """Progress and heartbeats for one attempt; database writes at most once a
    second unless forced. Raises Stop when the job must not go on."""

    def __init__(self, job_id: int, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.last = 0.0
        self.pending: list[dict[str, Any]] = []
        self.progress_hint = 0.0

    def beat(
        self,
        progress: float,
        stage: str,
        message: str | None = None,
        *,
        history: list[dict[str, Any]] | None = None,
        metrics: dict[str, Any] | None = None,
        level: str = "info",
        force: bool = False,
    ) -> None:
        self.pending.extend(history or [])
        if (
            not force
            and message is None
            and time.monotonic() - self.last < BEAT_SECONDS
        ):
            return
        alive = services.job_heartbeat(
            job_id=self.job_id,
            attempt=self.attempt,
            progress=int(progress),
            stage=stage,
            message=message,
            metrics=metrics,
            level=level,
            history=self.pending,
        )
        self.pending = []
        self.last = time.monotonic()
        if not alive:
            raise Stop


def build_estimator(problem: str, algorithm: str, params: dict[str, Any], seed: int):  # type: ignore[no-untyped-def]
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    classify = problem == "classification"
    if algorithm == "logistic_regression":
        return Pipeline(
            [
                ("scale", StandardScaler()),
                ("model", LogisticRegression(random_state=seed, **params)),
            ]
        )
    if algorithm == "linear_regression":
        return LinearRegression(**params)
    if algorithm == "random_forest":
        cls = RandomForestClassifier if classify else RandomForestRegressor
        return cls(random_state=seed, n_jobs=1, **params)
    cls = GradientBoostingClassifier if classify else GradientBoostingRegressor
    return cls(random_state=seed, **params)


def _fit(estimator: Any, algorithm: str, x: Any, y: Any, report: Reporter) -> None:
    """Fit between 15 and 80 percent, beating as it goes."""
    if algorithm == "gradient_boosting":
        total = estimator.n_estimators

        def monitor(i: int, est: Any, _locals: Any) -> bool:
            report.beat(
                15 + 65 * (i + 1) / total,
                f"fitting: tree {i + 1} of {total}",
                history=[
                    {
                        "step": i + 1,
                        "name": "train_loss",
                        "value": float(est.train_score_[i]),
                    }
                ],
            )
            return False

        estimator.fit(x, y, monitor=monitor)
        return
    if algorithm == "random_forest":
        total = estimator.n_estimators
        step = max(1, total // 20)
        estimator.set_params(warm_start=True)
        grown = 0
        while grown < total:
            grown = min(total, grown + step)
            estimator.set_params(n_estimators=grown)
            estimator.fit(x, y)
            report.beat(15 + 65 * grown / total, f"fitting: {grown} of {total} trees")
        estimator.set_params(warm_start=False)
        return
    report.beat(20, "fitting", force=True)
    estimator.fit(x, y)


def evaluate(problem: str, estimator: Any, x: Any, y: Any) -> dict[str, Any]:
    """Holdout metrics: plain floats (and the confusion matrix as lists)."""
    from sklearn import metrics as m

    predicted = estimator.predict(x)
    if problem == "regression":
        return {
            "mae": float(m.mean_absolute_error(y, predicted)),
            "rmse": float(np.sqrt(m.mean_squared_error(y, predicted))),
            "r2": float(m.r2_score(y, predicted)),
        }
    classes = list(estimator.classes_)
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
    if binary:
        kwargs["pos_label"] = classes[1]
    out: dict[str, Any] = {
        "accuracy": float(m.accuracy_score(y, predicted)),
        "precision": float(m.precision_score(y, predicted, **kwargs)),
        "recall": float(m.recall_score(y, predicted, **kwargs)),
        "f1": float(m.f1_score(y, predicted, **kwargs)),
        "confusion_matrix": {
            "labels": [_plain(c) for c in classes],
            "matrix": m.confusion_matrix(y, predicted, labels=classes).tolist(),
        },
    }
    try:
        proba = estimator.predict_proba(x)
        if binary:
            out["auc"] = float(m.roc_auc_score(y == classes[1], proba[:, 1]))
        else:
            out["auc"] = float(
                m.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            )
    except ValueError:  # a class missing from the holdout
        pass
    return out


def global_importance(
    estimator: Any, features: list[str], background: Any, holdout: Any
) -> dict[str, float]:
    """Mean |SHAP| per feature over (up to) EXPLAIN_ROWS holdout rows."""
    from apps.inference.explain import build_explainer

    with warnings.catch_warnings():
        # The explainer feeds arrays to a model fitted on named columns.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        explainer = build_explainer(estimator, features, background)
        rows = explainer.explain(holdout[:EXPLAIN_ROWS])
    return {
        name: float(np.mean([abs(r["values"][name]) for r in rows]))
        for name in features
    }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def run(job: Job, report: Reporter) -> dict[str, Any]:
    """Train the job's model and register it; returns the metrics."""
    import sklearn
    import skops.io as sio
    from sklearn.model_selection import train_test_split

    config = job.config
    problem, algorithm = config["problem_type"], config["algorithm"]
    target, features = config["target"], config["features"]
    report.beat(2, "loading data", "Loading the dataset.", force=True)
    assert job.dataset is not None
    frame = dataset_load(job.dataset)
    missing = [c for c in [*features, target] if c not in frame.columns]
    if missing:
        raise ApplicationError(
            f"The dataset has no column {missing[0]!r}.", code="invalid_config"
        )
    frame = frame[[*features, target]]
    before = len(frame)
    frame = frame.dropna()
    if len(frame) < before:
        report.beat(
            5,
            "loading data",
            f"Dropped {before - len(frame)} rows with missing values.",
            level="warn",
        )
    x = frame[features].astype(float)
    y = frame[target]
    if problem == "regression":
        y = y.astype(float)
    stratify = None
    if problem == "classification" and y.value_counts().min() >= 2:
        stratify = y
    x_train, x_test, y_train, y_test = train_test_split(
        x,
        y,
        test_size=config["validation_split"],
        random_state=config["seed"],
        stratify=stratify,
    )
    report.beat(
        10,
        "split",
        f"{len(x_train)} training rows, {len(x_test)} holdout rows.",
    )
    estimator = build_estimator(
        problem, algorithm, config["hyperparameters"], config["seed"]
    )
    _fit(estimator, algorithm, x_train, y_train, report)
    report.beat(82, "evaluating", "Fitted; evaluating on the holdout.")
    metrics = evaluate(problem, estimator, x_test, y_test)
    scalar = {k: v for k, v in metrics.items() if isinstance(v, float)}
    report.beat(
        88,
        "explaining",
        "Holdout: " + ", ".join(f"{k}={v:.4f}" for k, v in scalar.items()),
        metrics=scalar,
    )
    background = x_train.sample(
        min(BACKGROUND_ROWS, len(x_train)), random_state=config["seed"]
    )
    importance = global_importance(
        estimator, features, background.to_numpy(), x_test.to_numpy()
    )
    report.beat(94, "registering", "Computed global SHAP importance.")
    payload = sio.dumps(estimator)
    background_rows = [
        {k: _plain(v) for k, v in row.items()}
        for row in background.to_dict(orient="records")
    ]
    dataset = job.dataset
    schema = [{"name": f, "type": "number", "required": True} for f in features]
    performance = {k: v for k, v in scalar.items() if k in PERFORMANCE_KEYS}
    performance = _clip(performance)
    metadata = {
        "model_info": {
            "provider": "training",
            "name": config["model_name"] or f"{dataset.name}-{target}",
            "architecture": "linear"
            if "linear" in algorithm or "logistic" in algorithm
            else "tree_ensemble",
            "architecture_detail": algorithm,
            "task": problem,
            "modalities": ["tabular"],
        },
        "training": {
            "dataset": f"{dataset.name} (sha256 {dataset.sha256[:12]})",
            "framework": "scikit-learn",
            "framework_version": sklearn.__version__,
        },
        "performance": performance,
        "input_schema": schema,
        "feature_importance": importance,
        "description": f"Trained by job {job.pk}: {algorithm} predicting {target}.",
    }
    if problem == "classification":
        metadata["output_schema"] = {
            "type": "categorical",
            "labels": [_plain(c) for c in estimator.classes_],
        }
    else:
        metadata["output_schema"] = {"type": "number"}

    def register(locked: Job) -> Any:
        return _register(locked, metadata, payload, background_rows, metrics, schema)

    version = services.job_succeed(
        job_id=job.pk, attempt=report.attempt, metrics=metrics, register=register
    )
    if version is None:
        raise Stop
    return metrics


PERFORMANCE_KEYS = ("accuracy", "f1", "auc", "precision", "recall", "mae", "rmse", "r2")


def _clip(performance: dict[str, float]) -> dict[str, float]:
    # Floating error can put a score a hair outside its range.
    out = {}
    for key, value in performance.items():
        if key in ("accuracy", "f1", "auc", "precision", "recall"):
            value = min(1.0, max(0.0, value))
        elif key in ("mae", "rmse"):
            value = max(0.0, value)
        elif key == "r2":
            value = min(1.0, value)
        out[key] = value
    return out


def _register(
    job: Job,
    metadata: dict[str, Any],
    payload: bytes,
    background_rows: list[dict[str, Any]],
    metrics: dict[str, Any],
    schema: list[dict[str, Any]],
) -> Any:
    """Inside job_succeed's transaction: model (found or created), version, files,
    and optionally a challenger seat in a group."""
    from apps.registry.artifacts import (
        artifact_file_path,
        artifact_files_delete,
        artifact_store,
    )
    from apps.registry.models import ModelArtifact, ModelVersion, RegisteredModel
    from apps.registry.services import model_create, version_create

    actor = job.created_by or services.SYSTEM
    name = metadata["model_info"]["name"]
    written = []
    try:
        model = RegisteredModel.objects.filter(name=name).first() or model_create(
            name=name,
            actor=actor,
            task_type=job.config["problem_type"],
            owner=job.created_by,
        )
        version = version_create(
            model=model,
            source=ModelVersion.Source.TRAINING,
            actor=actor,
            metadata=metadata,
            metrics={**metadata["performance"], **metrics},
            input_schema=schema,
            lineage={
                "job_id": job.pk,
                "dataset_id": job.dataset_id,
                "dataset_sha256": job.dataset.sha256 if job.dataset else "",
                "config": job.config,
            },
        )
        for role, data, filename in (
            (ModelArtifact.Role.MODEL, payload, "model.skops"),
            (
                ModelArtifact.Role.BACKGROUND,
                json.dumps(background_rows).encode(),
                "background.json",
            ),
        ):
            artifact = artifact_store(
                version=version,
                uploaded_file=ContentFile(data, name=filename),
                role=role,
                actor=actor,
            )
            written.append(artifact_file_path(artifact))
        if job.config.get("group"):
            _join_group(job, version, actor)
    except BaseException:
        artifact_files_delete(written)
        raise
    return version


def _join_group(job: Job, version: Any, actor: Any) -> None:
    """Add the version to the configured group as a challenger with weight 0 (not
    routed until someone gives it traffic). A refusal is an event, not a failure."""
    from apps.groups.models import Membership, ModelGroup
    from apps.groups.services import members_set

    group = ModelGroup.objects.filter(slug=job.config["group"]).first()
    if group is None:
        services.job_event_add(
            job=job, level="warn", message=f"Group '{job.config['group']}' not found."
        )
        return
    members = [
        {
            "version_id": m.version_id,
            "role": m.role,
            "weight": m.weight,
            "active": m.active,
        }
        for m in Membership.objects.filter(group=group)
    ]
    members.append({"version_id": version.pk, "role": "challenger", "weight": 0})
    try:
        from django.db import transaction

        with transaction.atomic():
            members_set(group=group, members=members, actor=actor)
    except ApplicationError as exc:
        services.job_event_add(
            job=job,
            level="warn",
            message=f"Not added to group '{group.slug}': {exc.message}",
        )
        return
    services.job_event_add(
        job=job, message=f"Added to group '{group.slug}' as a challenger (weight 0)."
    )


def train(job_id: int) -> str:
    """Claim the job and run it; every outcome is recorded on the job."""
    job = services.job_claim(job_id=job_id)
    if job is None:
        return "skipped"
    report = Reporter(job.pk, job.attempts)
    try:
        run(job, report)
    except Stop:
        current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        if current == Job.Status.CANCELLING:
            services.job_mark_cancelled(job_id=job_id, attempt=report.attempt)
            return "cancelled"
        return "lost"
    except ApplicationError as exc:
        services.job_fail(
            job_id=job_id, attempt=report.attempt, code=exc.code, message=exc.message
        )
        return "failed"
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        services.job_fail(
            job_id=job_id,
            attempt=report.attempt,
            code="training_error",
            message=f"{type(exc).__name__}: {exc}",
        )
        return "failed"
    return "succeeded"
