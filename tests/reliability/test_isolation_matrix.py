"""Tenant isolation matrix: every route, every method, with tenant A's credentials
against tenant B's objects — through A's host (nothing of B is read or changed) and
through B's host (A's key is refused). The test fails when a route has no case."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import schema_context

# Every named route of a tenant host, acknowledged. A new route must be added here (and
# given a placeholder rule below if it takes a new kind of identifier).
KNOWN_ROUTES = {
    "core:dashboard",
    "accounts:api-keys",
    "accounts:api-key-revoke",
    "audit:event-list",
    "providers:provider-list",
    "providers:provider-create",
    "providers:provider-bulk",
    "providers:provider-edit",
    "providers:provider-test",
    "providers:provider-delete",
    "registry:model-upload",
    "registry:model-import",
    "registry:model-import-preview",
    "registry:model-import-review",
    "registry:model-import-detail",
    "registry:model-import-decide",
    "registry:model-list",
    "registry:model-import-provider",
    "registry:model-import-catalogue",
    "registry:model-detail",
    "registry:version-activate",
    "registry:version-archive",
    "groups:group-list",
    "groups:group-create",
    "groups:group-detail",
    "groups:group-edit",
    "groups:group-members",
    "groups:group-status",
    "groups:group-try",
    "archives:group-archives",
    "inference:browser",
    "inference:group",
    "inference:detail",
    "login",
    "logout",
    "api:me",
    "api:version-upload",
    "api:artifact-download",
    "api:model-transform",
    "api:model-transform-batch",
    "api:model-transform-capabilities",
    "api:model-transform-stats",
    "api:model-transform-detail",
    "api:model-transform-accept",
    "api:model-transform-reject",
    "api:model-version-quality",
    "api:model-version-enhance",
    "api:model-version-enhance-apply",
    "api:model-import",
    "api:model-import-batch",
    "api:model-import-catalogue",
    "api:model-import-validate",
    "api:model-version-importance",
    "api:model-version-list",
    "api:model-version-detail",
    "api:model-version-activate",
    "api:model-version-archive",
    "api:model-versions",
    "api:model-list",
    "api:model-detail",
    "api:group-archive-list",
    "api:group-archive-download",
    "api:group-inference-list",
    "api:group-inference-export",
    "api:group-inference-detail",
    "api:group-predict",
    "api:group-feedback",
    "api:api-key-list",
    "api:api-key-detail",
    "api:api-key-revoke",
    "api:audit-event-list",
    "api:audit-event-detail",
    "api:provider-list",
    "api:provider-bulk",
    "api:provider-validate",
    "api:provider-detail",
    "api:provider-models",
    "api:provider-test",
    "api:group-list",
    "api:group-detail",
    "api:group-members",
    "api:group-set-status",
    "oip-server",
    "oip-ready",
    "oip-live",
    "oip-model",
    "oip-model-version",
    "oip-model-ready",
    "oip-model-version-ready",
    "oip-infer",
    "oip-version-infer",
    "openai-models",
    "openai-chat",
    "schema",
    "api-docs",
    "analytics:comparison",
    "analytics:promote",
    "api:group-comparison",
    "api:group-promote",
    "api:group-promotions",
    "api:group-promotion-rules-evaluate",
    "jobs:job-list",
    "jobs:job-new",
    "jobs:job-detail",
    "jobs:job-cancel",
    "jobs:job-retry",
    "api:dataset-list",
    "api:dataset-detail",
    "api:job-list",
    "api:job-detail",
    "api:job-cancel",
    "api:job-events",
    "api:job-retry",
    "version_analytics:version-analytics",
    "notifications:notification-list",
    "notifications:notification-read",
    "notifications:notification-read-all",
    "notifications:webhook-list",
    "notifications:webhook-toggle",
    "notifications:webhook-delete",
    "api:notification-list",
    "api:notification-read",
    "api:notification-read-all",
    "api:webhook-list",
    "api:webhook-detail",
    "api:webhook-deliveries",
}
METHODS = ["get", "post", "put", "patch", "delete"]
MARKER = "zq9-beta-secret"  # in every name/description of B's objects


def _routes() -> list[tuple[str, str | None]]:
    def walk(resolver: URLResolver, prefix: str, ns: str | None):  # type: ignore[no-untyped-def]
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                child = ns
                if p.namespace:
                    child = f"{ns}:{p.namespace}" if ns else p.namespace
                yield from walk(p, prefix + str(p.pattern), child)
            elif isinstance(p, URLPattern):
                name = p.name and (f"{ns}:{p.name}" if ns else p.name)
                yield prefix + str(p.pattern), name

    return list(walk(get_resolver("config.urls_tenants"), "", None))


def _concrete(template: str, ids: dict[str, Any]) -> str:
    """Fill a route template with B's identifiers (which identifier depends on where)."""
    path = template.replace("^", "").replace("$", "")
    rules = [
        (
            r"\(\?P<slug>[^)]*\)|<slug:slug>",
            "model_slug"
            if "/models/" in "/" + path or path.startswith("models/")
            else "group_slug",
        ),
        (r"<int:version_id>", "version"),
        (r"<int:artifact_id>", "artifact"),
        (r"<str:prefix>|\(\?P<prefix>[^)]*\)", "key_prefix"),
        (r"<str:request_id>", "request_id"),
        (r"<str:day>", "day"),
        (r"<str:version>", "oip_version"),
    ]
    for pattern, key in rules:
        path = re.sub(pattern, str(ids[key]), path)
    if re.search(r"<int:pk>|\(\?P<pk>[^)]*\)", path):
        if "providers/" in path:
            key = "provider"
        elif "notifications/" in path:
            key = "notification"
        elif "webhooks/" in path:
            key = "webhook"
        elif "datasets/" in path:
            key = "dataset"
        elif path.startswith(("jobs/", "api/v1/jobs/")) or "/jobs/" in path:
            key = "job"
        elif "transform/" in path or "import/" in path:
            key = "transformation"
        elif "audit-events/" in path:
            key = "audit_event"
        else:
            key = "version"
        path = re.sub(r"<int:pk>|\(\?P<pk>[^)]*\)", str(ids[key]), path)
    assert "<" not in path and "(?P" not in path, f"no rule for {template}"
    return "/" + path.replace("/models/^", "/models/")


@pytest.fixture
def beta_world(tenant_b, make_key):
    """B's objects: provider, model + version + artifact, group with a logged row,
    an audit event, a transformation."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from sklearn.linear_model import LogisticRegression
    from skops.io import dumps

    from apps.audit.models import AuditEvent
    from apps.groups.services import group_create, group_set_status, members_set
    from apps.groups.serving import predict
    from apps.providers.services import provider_create
    from apps.registry.models import ModelArtifact, Transformation
    from apps.registry.transform.service import transform_metadata
    from apps.registry.uploads import version_upload

    with schema_context("beta"):
        provider = provider_create(
            actor="t",
            name=f"prov {MARKER}",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            api_key="sk-beta-123456",
        )
        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        version = version_upload(
            file=SimpleUploadedFile("m.skops", dumps(model)),
            actor="t",
            model_name="beta only model",
            metadata={"description": MARKER},
            input_schema=[{"name": "x", "type": "number"}],
        )
        group = group_create(
            name=f"Beta only {MARKER}",
            slug="beta-only-group",
            actor="t",
            description=MARKER,
        )
        members_set(
            group=group,
            actor="t",
            members=[{"version_id": version.pk, "role": "champion", "weight": 100}],
        )
        group_set_status(group=group, status="active", actor="t")
        row = predict(
            slug="beta-only-group", inputs={"x": 424242.5}, requester="t", door="rest"
        )
        transform_metadata(
            payload={
                "id": f"m-{MARKER}",
                "object": "model",
                "created": 1,
                "owned_by": MARKER,
            },
            actor="t",
        )
        key, _ = make_key(tenant_b, name="beta-key")
        from django.contrib.auth.models import User

        from apps.notifications.services import notify, webhook_endpoint_create

        webhook, _ = webhook_endpoint_create(
            url="http://127.0.0.1:9/hook",
            events=["job.succeeded"],
            actor="t",
            description=MARKER,
        )
        notification = notify(
            event="job.succeeded",
            title=MARKER,
            payload={"marker": MARKER},
            user=User.objects.get(username="admin@beta.test"),
        )
        from apps.jobs.datasets import dataset_create
        from apps.jobs.services import job_create

        rows = "a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40))
        dataset = dataset_create(
            file=SimpleUploadedFile("d.csv", rows.encode()), actor="t", name=MARKER
        )
        job, _ = job_create(
            actor="t",
            dataset=dataset,
            submit=False,
            config={"target": "label", "algorithm": "logistic_regression"},
        )
        return {
            "provider": provider.pk,
            "version": version.pk,
            "artifact": ModelArtifact.objects.get(version=version).pk,
            "model_slug": version.model.slug,
            "group_slug": group.slug,
            "group_id": group.pk,
            "request_id": row.request_id,
            "key_prefix": key.prefix,
            "audit_event": AuditEvent.objects.order_by("-id").first().pk,
            "transformation": Transformation.objects.order_by("-id").first().pk,
            "day": "2026-01-01",
            "oip_version": "1",
            "dataset": dataset.pk,
            "job": job.pk,
            "notification": notification.pk,
            "webhook": webhook.pk,
        }


def _beta_fingerprint(group_id: int) -> str:
    """A hash of every row of B's schema that a write could change."""
    digest = hashlib.sha256()
    with schema_context("beta"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'beta' "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        for (table,) in cursor.fetchall():
            if table.startswith("django_session"):
                continue
            cursor.execute(f'SELECT t::text FROM "beta"."{table}" t ORDER BY 1')
            for (text,) in cursor.fetchall():
                digest.update(text.encode())
    return digest.hexdigest()


def test_every_route_has_a_case():
    names = {name for _, name in _routes() if name and not name.startswith("admin:")}
    assert names - KNOWN_ROUTES == set(), "new routes need an isolation case"
    assert KNOWN_ROUTES - names == set(), "cases for routes that no longer exist"


@pytest.mark.slow
def test_tenant_a_can_neither_read_nor_change_tenant_bs_objects(
    tenant_a, beta_world, make_key, make_user, api_client, page_client
):
    _, key_a = make_key(tenant_a, scope="manage")
    api_a = api_client(tenant_a, key=key_a)
    pages_a = page_client(tenant_a, make_user(tenant_a, "admin"))
    api_a_on_b = api_client(tenant_a, key=key_a, host="beta.test")
    before = _beta_fingerprint(beta_world["group_id"])
    leaks, writes_through_b = [], []

    for template, name in _routes():
        if not name or name.startswith("admin:") or name in ("logout",):
            continue
        path = _concrete(template, beta_world)
        machine = path.startswith(("/api/", "/v2/", "/openai/"))
        client = api_a if machine else pages_a
        for method in METHODS:
            response = (
                getattr(client, method)(path, {}, format="json")
                if machine
                else (getattr(client, method)(path, {}))
            )
            body = (
                b"".join(response.streaming_content)
                if response.streaming
                else (response.content)
            )
            if MARKER.encode() in body or b"424242.5" in body:
                leaks.append((method, path, response.status_code))
            if machine:
                other = getattr(api_a_on_b, method)(path, {}, format="json")
                if other.status_code not in (401, 403, 404, 405) and name not in (
                    "oip-server",
                    "oip-ready",
                    "oip-live",
                    "schema",
                    "api-docs",
                ):
                    writes_through_b.append((method, path, other.status_code))

    assert leaks == []
    assert writes_through_b == []
    assert _beta_fingerprint(beta_world["group_id"]) == before


@pytest.mark.slow
def test_tenant_admin_cannot_open_bs_objects_in_the_admin(
    tenant_a, beta_world, make_user, page_client
):
    pages_a = page_client(tenant_a, make_user(tenant_a, "admin"))
    for template, name in _routes():
        if name is not None or "<path:object_id>" not in template:
            continue
        for key in ("provider", "version", "artifact", "audit_event", "transformation"):
            path = (
                "/"
                + template.replace("<path:object_id>", str(beta_world[key]))
                + "change/"
            )
            body = pages_a.get(path, follow=True).content
            assert MARKER.encode() not in body, path
