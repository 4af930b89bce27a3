"""Seed the bench tenant in the bench database (run by harness.prepare with the bench
environment). Prints one JSON line: the API key, groups and ids the scripts need."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django

django.setup()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django_tenants.utils import schema_context  # noqa: E402

from apps.accounts.services import api_key_create  # noqa: E402
from apps.groups import routing  # noqa: E402
from apps.groups.services import (  # noqa: E402
    group_create,
    group_set_status,
    members_set,
)
from apps.groups.serving import group_route  # noqa: E402
from apps.providers.services import provider_create  # noqa: E402
from apps.registry.services import model_import  # noqa: E402
from apps.registry.uploads import version_upload  # noqa: E402
from apps.tenants.demo import DEMO_GROUP, feature_names, seed_demo_content  # noqa: E402
from apps.tenants.services import public_tenant_ensure, tenant_create  # noqa: E402

TENANT = "bench"
ACTOR = "bench"
TEN_GROUP = "bench-ten"
LLM_GROUP = "bench-llm"


def ten_estimators() -> list[tuple[str, object]]:
    """Ten different small classifiers: the worker holds all of them in memory."""
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    def lr(c: float) -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))

    return [
        ("logistic C=0.1", lr(0.1)),
        ("logistic C=1", lr(1.0)),
        ("logistic C=10", lr(10.0)),
        ("tree depth 3", DecisionTreeClassifier(max_depth=3, random_state=1)),
        ("tree depth 6", DecisionTreeClassifier(max_depth=6, random_state=1)),
        ("forest 20", RandomForestClassifier(n_estimators=20, random_state=1)),
        ("forest 10", RandomForestClassifier(n_estimators=10, random_state=1)),
        ("boosting 20", GradientBoostingClassifier(n_estimators=20, random_state=1)),
        ("boosting 60", GradientBoostingClassifier(n_estimators=60, random_state=1)),
        ("hist boosting", HistGradientBoostingClassifier(max_iter=30, random_state=1)),
    ]


def seed_ten_group() -> int:
    from sklearn.datasets import load_breast_cancer
    from skops.io import dumps

    data = load_breast_cancer()
    schema = [{"name": n, "type": "number"} for n in feature_names()]
    versions = []
    for label, estimator in ten_estimators():
        estimator.fit(data.data, data.target)  # type: ignore[attr-defined]
        versions.append(
            version_upload(
                file=SimpleUploadedFile(
                    f"{label.replace(' ', '_')}.skops", dumps(estimator)
                ),
                actor=ACTOR,
                model_name="bench-ten-classifiers",
                input_schema=schema,
                metadata={"description": f"Bench: {label}."},
            )
        )
    group = group_create(name="Bench: ten versions", slug=TEN_GROUP, actor=ACTOR)
    members_set(
        group=group,
        actor=ACTOR,
        members=[
            {
                "version_id": v.pk,
                "role": "champion" if i == 0 else "challenger",
                "weight": 10,
            }
            for i, v in enumerate(versions)
        ],
    )
    group_set_status(group=group, status="active", actor=ACTOR)
    return group.pk


def seed_llm_group() -> dict[str, int]:
    # The fake provider's port is known only when bench_openai_door.py starts it;
    # it updates base_url then.
    provider = provider_create(
        actor=ACTOR,
        name="bench-fake-openai",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="sk-bench-fake-000000",
        max_retries=0,
    )
    version_id = model_import(
        provider=provider, external_id="fake-gpt", actor=ACTOR
    ).version_id
    group = group_create(name="Bench: fake LLM", slug=LLM_GROUP, actor=ACTOR)
    members_set(
        group=group,
        actor=ACTOR,
        members=[{"version_id": version_id, "role": "champion", "weight": 100}],
    )
    group_set_status(group=group, status="active", actor=ACTOR)
    return {"llm_group_id": group.pk, "provider_id": provider.pk}


def champion_key(slug: str) -> tuple[str, int]:
    """A routing key that the sticky demo group sends to its champion, and the
    champion's version: predict and the bare view then run the same model."""
    route = group_route(slug)
    table = route.table()
    assert table.champion is not None
    for index in range(1000):
        key = f"bench-{index}"
        if routing.choose(table, routing_key=key) == table.champion:
            return key, table.champion.version_id
    raise RuntimeError("no key routes to the champion")


def main() -> None:
    public_tenant_ensure()
    tenant_create(
        slug=TENANT,
        name="Bench",
        admin_email="admin@bench.localhost",
        domains=["bench.localhost", "localhost", "127.0.0.1"],
    )
    with schema_context(TENANT):
        demo = seed_demo_content(actor=ACTOR)
        _, key = api_key_create(name="bench", scope="predict", actor=ACTOR)
        routing_key, version_id = champion_key(DEMO_GROUP)
        out = {
            "api_key": key,
            "group": DEMO_GROUP,
            "group_id": demo.pk,
            "routing_key": routing_key,
            "version_id": version_id,
            "ten_group": TEN_GROUP,
            "ten_group_id": seed_ten_group(),
            "llm_group": LLM_GROUP,
            **seed_llm_group(),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
