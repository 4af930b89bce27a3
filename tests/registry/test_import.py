"""Importing models from a provider: idempotent, batched, all-or-nothing on request."""

import pytest
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.providers.services import provider_create
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.services import model_import, model_import_batch


@pytest.fixture
def provider(tenant_a):
    with schema_context("alpha"):
        yield provider_create(
            actor="test",
            name="oai",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            api_key="sk-test-1234567890",
            price_per_1k_input=0.5,
        )


def _items(count: int, bad: set[int]) -> list[dict]:
    items = []
    for i in range(count):
        item = {"external_id": f"model-{i:02d}"}
        if i in bad:
            item = (
                {"external_id": ""}
                if i % 2
                else {
                    "external_id": f"model-{i:02d}",
                    "metadata": {"model_info": {"context_window": -5}},
                }
            )
        items.append(item)
    return items


def test_skip_errors_creates_the_good_items_and_reports_the_bad(provider):
    bad = {3, 10, 21, 30, 44}
    with schema_context("alpha"):
        report = model_import_batch(
            provider=provider, items=_items(50, bad), mode="skip_errors", actor="test"
        )
        assert ModelVersion.objects.count() == 45
        assert RegisteredModel.objects.count() == 45

    assert report["summary"] == {
        "created": 45,
        "updated": 0,
        "unchanged": 0,
        "failed": 5,
        "skipped": 0,
    }
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert [r["external_id"] for r in failed] == [
        "",
        "model-10",
        "",
        "model-30",
        "model-44",
    ]
    assert failed[0]["fields"] == {"external_id": ["This field is required."]}
    assert "context_window" in failed[1]["fields"]["metadata"][0]


def test_fail_fast_creates_nothing_when_one_item_is_bad(provider):
    with schema_context("alpha"):
        report = model_import_batch(
            provider=provider,
            items=_items(50, {3, 10, 21, 30, 44}),
            mode="fail_fast",
            actor="test",
        )
        assert ModelVersion.objects.count() == 0
        assert RegisteredModel.objects.count() == 0
        assert not AuditEvent.objects.filter(action="version.create").exists()

    statuses = [r["status"] for r in report["results"]]
    assert statuses == ["skipped"] * 3 + ["failed"] + ["skipped"] * 46
    assert report["results"][0]["reason"] == "rolled back: an item failed"
    assert report["results"][4]["reason"] == "not attempted: an item failed"


def test_importing_the_same_model_twice_updates_never_duplicates(provider):
    with schema_context("alpha"):
        first = model_import(provider=provider, external_id="gpt-x", actor="test")
        again = model_import(provider=provider, external_id="gpt-x", actor="test")
        changed = model_import(
            provider=provider,
            external_id="gpt-x",
            actor="test",
            activate=True,
            metadata={"model_info": {"context_window": 128000}},
        )
        version = ModelVersion.objects.get()

    assert (first.status, again.status, changed.status) == (
        "created",
        "unchanged",
        "updated",
    )
    assert first.version_id == again.version_id == changed.version_id == version.pk
    assert version.number == 1 and version.status == "active"
    assert version.metadata["model_info"] == {
        "provider": "openai",
        "external_id": "gpt-x",
        "context_window": 128000,
    }


def test_imported_version_carries_canonical_metadata_and_pricing(provider):
    with schema_context("alpha"):
        result = model_import(provider=provider, external_id="gpt-4o", actor="test")
        version = ModelVersion.objects.get(pk=result.version_id)

    assert version.model.name == "oai/gpt-4o"
    assert version.source == "provider" and version.status == "draft"
    assert version.metadata == {
        "model_info": {
            "provider": "openai",
            "external_id": "gpt-4o",
            "name": "gpt-4o",
            "capabilities": [],
            "architecture": "transformer",
            "modalities": ["text"],
        },
        "pricing": {"input_per_1k": 0.5, "output_per_1k": 0.0},
    }
