"""The master loads the active groups' models before forking its workers."""

from __future__ import annotations

from django.db import connections
from django_tenants.utils import schema_context

from apps.groups.serving import warm_active_groups
from apps.registry import artifacts
from apps.registry.models import ModelArtifact
from tests.groups.group_helpers import demo_group  # noqa: F401


def _alpha_models_loaded(group) -> set[int]:  # type: ignore[no-untyped-def]
    """Which of the group's model artifacts this process has loaded."""
    with schema_context("alpha"):
        ids = set(
            ModelArtifact.objects.filter(
                version__memberships__group=group, role=ModelArtifact.Role.MODEL
            ).values_list("pk", flat=True)
        )
    loaded = {
        pk for schema, pk, _ in list(artifacts._loaded._items) if schema == "alpha"
    }
    return ids & loaded


def test_active_groups_models_are_loaded_and_connections_closed(
    demo_group,  # noqa: F811
    monkeypatch,
):
    closed = []
    # Inside the test's transaction the connection must stay open: record the call.
    monkeypatch.setattr(connections, "close_all", lambda: closed.append(True))
    artifacts.artifact_cache_clear()

    assert warm_active_groups(60) >= 2
    assert len(_alpha_models_loaded(demo_group)) == 2  # champion and challenger
    assert closed == [True]
    assert warm_active_groups(60) == 0  # already loaded


def test_paused_groups_and_a_spent_budget_load_nothing(
    demo_group,  # noqa: F811
    monkeypatch,
):
    from apps.groups.services import group_set_status

    monkeypatch.setattr(connections, "close_all", lambda: None)
    artifacts.artifact_cache_clear()
    assert warm_active_groups(0) == 0
    with schema_context("alpha"):
        group_set_status(group=demo_group, status="paused", actor="t")
    warm_active_groups(60)
    assert _alpha_models_loaded(demo_group) == set()
