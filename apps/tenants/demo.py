"""The demo organisation's content: two real classifiers trained on scikit-learn's
breast cancer dataset, registered as uploaded versions and put behind one group."""

from __future__ import annotations

import json
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.groups.models import ModelGroup
from apps.groups.services import group_create, group_set_status, members_set
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.services import version_set_status

DEMO_MODEL = "breast-cancer-classifier"
DEMO_GROUP = "breast-cancer"


def feature_names() -> list[str]:
    from sklearn.datasets import load_breast_cancer

    return [n.replace(" ", "_") for n in load_breast_cancer().feature_names]


def demo_rows(count: int = 5, offset: int = 0) -> list[dict[str, float]]:
    """Real rows of the dataset, as prediction inputs."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = feature_names()
    rows = data.data[offset : offset + count]
    return [
        {n: round(float(v), 6) for n, v in zip(names, row, strict=True)} for row in rows
    ]


def demo_labels(count: int = 5, offset: int = 0) -> list[int]:
    from sklearn.datasets import load_breast_cancer

    return [int(v) for v in load_breast_cancer().target[offset : offset + count]]


def train_demo_models() -> list[tuple[str, Any, dict[str, float]]]:
    """(label, fitted estimator, holdout metrics) for a champion and a challenger."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=7, stratify=data.target
    )
    models = [
        (
            "logistic regression",
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        ),
        (
            "gradient boosting",
            GradientBoostingClassifier(n_estimators=60, random_state=7),
        ),
    ]
    out = []
    for label, estimator in models:
        estimator.fit(x_train, y_train)
        predicted = estimator.predict(x_test)
        scores = estimator.predict_proba(x_test)[:, 1]
        metrics = {
            "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
            "f1": round(float(f1_score(y_test, predicted)), 4),
            "auc": round(float(roc_auc_score(y_test, scores)), 4),
        }
        out.append((label, estimator, metrics))
    return out


def seed_demo_content(*, actor: Any = "command:seed_demo") -> ModelGroup:
    """Idempotent: the model, its two versions and the active group."""
    from skops.io import dumps

    from apps.registry.uploads import version_upload

    model = RegisteredModel.objects.filter(name=DEMO_MODEL).first()
    versions = (
        list(ModelVersion.objects.filter(model=model).order_by("number"))
        if model
        else []
    )
    if len(versions) < 2:
        schema = [{"name": n, "type": "number"} for n in feature_names()]
        # A background sample for the explainers that need one (100 training rows).
        background = json.dumps(demo_rows(100, offset=200)).encode()
        for label, estimator, metrics in train_demo_models()[len(versions) :]:
            versions.append(
                version_upload(
                    file=SimpleUploadedFile(
                        f"{label.replace(' ', '_')}.skops", dumps(estimator)
                    ),
                    actor=actor,
                    model_name=DEMO_MODEL,
                    input_schema=schema,
                    extra_files=[
                        (
                            "background",
                            SimpleUploadedFile("background.json", background),
                        )
                    ],
                    metadata={
                        "description": f"{label.capitalize()} on the breast cancer dataset.",
                        "model_info": {
                            "task": "classification",
                            "architecture": "linear"
                            if "logistic" in label
                            else "tree_ensemble",
                        },
                        "training": {
                            "dataset": "sklearn breast cancer (569 rows)",
                            "framework": "scikit-learn",
                        },
                        "performance": metrics,
                        "output_schema": {"type": "integer", "labels": [0, 1]},
                    },
                )
            )
    group = ModelGroup.objects.filter(slug=DEMO_GROUP).first()
    if group is None:
        group = group_create(
            name="Breast cancer screening",
            slug=DEMO_GROUP,
            actor=actor,
            description="Logistic regression (champion) against gradient boosting.",
            hypothesis="Gradient boosting is at least as accurate as the linear baseline.",
            primary_metric="accuracy",
            traffic_config={"sticky": True, "explain_sample_rate": 0.2},
        )
        members_set(
            group=group,
            actor=actor,
            members=[
                {"version_id": versions[0].pk, "role": "champion", "weight": 80},
                {"version_id": versions[1].pk, "role": "challenger", "weight": 20},
            ],
        )
    for version in versions:
        if version.status != ModelVersion.Status.ACTIVE:
            version_set_status(version=version, status="active", actor=actor)
    if group.status != ModelGroup.Status.ACTIVE:
        group = group_set_status(group=group, status="active", actor=actor)
    return group
