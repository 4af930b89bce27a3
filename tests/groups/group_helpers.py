"""Shared by the group API and page tests: the demo group of tenant alpha (two real
scikit-learn versions, trained once per module), a third version, member rows as
the weights editor posts them, audit reads, and a URL conf with the group pages.

This module is also a URL conf: the tenant routes plus `/groups/` pages when
config/urls_tenants.py does not include them yet (`pages_wired`)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLResolver, include, path
from django_tenants.utils import schema_context

from config import urls_tenants

__all__ = [
    "audit_of",
    "demo_group",
    "members_post",
    "pages_wired",
    "third_version",
    "versions_of",
]

_WIRED = any(
    isinstance(p, URLResolver) and p.namespace == "groups"
    for p in urls_tenants.urlpatterns
)
urlpatterns = [
    *urls_tenants.urlpatterns,
    *([] if _WIRED else [path("groups/", include("apps.groups.page_urls"))]),
]
handler400 = urls_tenants.handler400
handler403 = urls_tenants.handler403
handler404 = urls_tenants.handler404
handler500 = urls_tenants.handler500


@pytest.fixture
def pages_wired(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__


@pytest.fixture
def demo_group(tenant_a: Any, trained: None) -> Any:
    """Active "breast-cancer": champion v1 80%, challenger v2 20%, sticky."""
    from apps.tenants.demo import seed_demo_content

    with schema_context("alpha"):
        return seed_demo_content(actor="test")


def versions_of(group: Any) -> dict[str, int]:
    """{"champion": version id, "challenger": version id} of a group (in alpha)."""
    with schema_context("alpha"):
        return {m.role: m.version_id for m in group.members.all()}


@pytest.fixture
def third_version(demo_group: Any) -> int:
    """v3 of the demo model: the champion's estimator uploaded again."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from skops.io import dumps

    from apps.registry.uploads import version_upload
    from apps.tenants import demo

    estimator = demo.train_demo_models()[0][1]
    with schema_context("alpha"):
        version = version_upload(
            file=SimpleUploadedFile("third.skops", dumps(estimator)),
            actor="test",
            model_name=demo.DEMO_MODEL,
            input_schema=[{"name": n, "type": "number"} for n in demo.feature_names()],
            metadata={"description": "The champion again, as a shadow."},
        )
        return int(version.pk)


def members_post(
    rows: list[dict[str, Any]],
    *,
    initial: int,
    routing_version: int | None = None,
    prefix: str = "members",
) -> dict[str, str]:
    """The POST body of the member rows: [{"version", "role", "weight", "active"?,
    "delete"?}]; `initial` rows are existing members."""
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        data[f"{prefix}-{i}-version"] = str(row.get("version") or "")
        data[f"{prefix}-{i}-role"] = row["role"]
        data[f"{prefix}-{i}-weight"] = str(row.get("weight", 0))
        if row.get("active", True):
            data[f"{prefix}-{i}-active"] = "on"
        if row.get("delete"):
            data[f"{prefix}-{i}-DELETE"] = "on"
    if routing_version is not None:
        data["routing_version"] = str(routing_version)
    return data


def audit_of(object_id: int, schema: str = "alpha") -> list[tuple[str, str]]:
    """(action, actor) of a group's audit events, oldest first."""
    from apps.audit.models import AuditEvent

    with schema_context(schema):
        return list(
            AuditEvent.objects.filter(
                object_type="groups.modelgroup", object_id=str(object_id)
            )
            .order_by("id")
            .values_list("action", "actor")
        )
