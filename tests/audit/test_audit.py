"""The audit trail: written by services with actor and request id, never rewritten."""

import pytest
from django.db import DatabaseError, transaction
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record


def test_issuing_and_revoking_a_key_is_audited_with_actor_and_request_id(
    tenant_a, make_user, api_client
):
    admin = make_user(tenant_a, "admin", email="boss@alpha.test")
    client = api_client(tenant_a, user=admin)

    created = client.post(
        "/api/v1/api-keys/", {"name": "ci", "scope": "manage"}, format="json"
    )
    prefix = created.json()["prefix"]
    revoked = client.post(f"/api/v1/api-keys/{prefix}/revoke/")

    with schema_context("alpha"):
        events = list(
            AuditEvent.objects.filter(action__startswith="api_key.")
            .order_by("id")
            .values("actor", "action", "after", "request_id")
        )
    assert events == [
        {
            "actor": "boss@alpha.test",
            "action": "api_key.create",
            "after": {"name": "ci", "scope": "manage", "prefix": prefix},
            "request_id": created["X-Request-ID"],
        },
        {
            "actor": "boss@alpha.test",
            "action": "api_key.revoke",
            "after": {"revoked": True},
            "request_id": revoked["X-Request-ID"],
        },
    ]
    assert created.json()["key"] not in str(events)


def test_audit_events_cannot_be_updated_or_deleted(tenant_a):
    with schema_context("alpha"):
        event = audit_record(actor="test", action="thing.do")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).update(action="thing.undo")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).delete()
        assert AuditEvent.objects.get(pk=event.pk).action == "thing.do"


def test_audit_record_refuses_the_public_schema(db):
    with pytest.raises(RuntimeError, match="needs a tenant schema"):
        audit_record(actor="test", action="x")


def test_audit_api_filters_by_request_id_and_is_tenant_scoped(
    tenant_a, tenant_b, make_key, api_client
):
    _, raw_a = make_key(tenant_a)
    _, raw_b = make_key(tenant_b)
    with schema_context("alpha"):
        audit_record(actor="x", action="alpha.only")

    seen_a = api_client(tenant_a, key=raw_a).get(
        "/api/v1/audit-events/?action=alpha.only"
    )
    seen_b = api_client(tenant_b, key=raw_b).get(
        "/api/v1/audit-events/?action=alpha.only"
    )

    assert seen_a.json()["count"] == 1
    assert seen_b.json()["count"] == 0
