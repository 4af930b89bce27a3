"""Models → Import metadata: paste, htmx preview with a confidence per field, decide;
the review list."""

from __future__ import annotations

import json

import pytest
from django_tenants.utils import schema_context

from apps.providers.services import provider_create
from apps.registry.models import ModelVersion, Transformation
from tests.registry import transform_helpers as s

IMPORT = "/models/import/"
PREVIEW = "/models/import/preview/"
REVIEW = "/models/import/review/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def editor(tenant_a, make_user):
    return make_user(tenant_a, "editor")


@pytest.fixture
def page(tenant_a, editor, page_client):
    return page_client(tenant_a, editor)


def rows() -> list[Transformation]:
    with schema_context("alpha"):
        return list(Transformation.objects.order_by("id"))


def test_import_page_is_for_editors(tenant_a, page, page_client, make_user):
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))

    response = page.get(IMPORT)

    assert response.status_code == 200
    assert b'hx-post="/models/import/preview/"' in response.content
    assert b"only the rules are available" in response.content
    assert viewer.get(IMPORT).status_code == 403
    assert page_client(tenant_a).get(IMPORT).status_code == 302


def test_htmx_preview_shows_format_fields_and_confidence_bands(tenant_a, page):
    response = page.post(
        PREVIEW, {"payload": json.dumps(s.LLAMA2_CONFIG), "engine": "auto"}, **HTMX
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # the fragment only
    assert '<span class="badge">huggingface_config</span>' in html
    assert "<code>model_info.task</code>" in html
    assert '<span class="conf high" title="0.9">90%</span>' in html
    assert '<span class="conf low" title="0.3">30%</span>' in html  # parameter count
    assert "is an estimate" in html
    assert "Accept metadata" in html
    (row,) = rows()
    assert row.status == "auto_accepted"


def test_preview_refusals_are_shown_in_the_fragment(tenant_a, page):
    empty = page.post(PREVIEW, {"payload": "  "}, **HTMX)
    llm_without_provider = page.post(
        PREVIEW, {"payload": "{}", "engine": "llm"}, **HTMX
    )

    assert empty.status_code == llm_without_provider.status_code == 200
    assert b"Paste some metadata first" in empty.content
    assert b"The LLM engine needs a provider." in llm_without_provider.content
    assert rows() == []


def test_plain_post_renders_the_page_with_the_preview(tenant_a, page):
    response = page.post(IMPORT, {"payload": s.MLMODEL})

    assert response.status_code == 200
    assert b"<h1>Import metadata</h1>" in response.content
    assert b"mlflow_mlmodel" in response.content


def test_provider_model_is_created_as_model_and_version(tenant_a, page):
    with schema_context("alpha"):
        provider = provider_create(
            actor="test",
            name="openai-main",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            api_key="sk-test-0123456789",
        )
    preview = page.post(PREVIEW, {"payload": json.dumps(s.OPENAI_MODEL)}, **HTMX)
    assert b"Create model + version" in preview.content
    (row,) = rows()

    response = page.post(
        f"/models/import/{row.pk}/decide/",
        {"action": "create", "model_name": "GPT-4o mini"},
    )

    with schema_context("alpha"):
        version = ModelVersion.objects.select_related("model").get()
    assert response.status_code == 302
    assert response["Location"] == f"/models/{version.model.slug}/"
    assert (version.provider_id, version.external_id, version.model.name) == (
        provider.pk,
        "gpt-4o-mini",
        "GPT-4o mini",
    )
    assert rows()[0].status == "accepted"


def test_review_list_shows_pending_and_rejects(tenant_a, page, page_client, make_user):
    page.post(PREVIEW, {"payload": json.dumps(s.UNKNOWN_FORMAT)}, **HTMX)
    (row,) = rows()
    viewer = page_client(tenant_a, make_user(tenant_a, "viewer"))

    listed = viewer.get(REVIEW)
    detail = viewer.get(f"/models/import/{row.pk}/")
    rejected = page.post(f"/models/import/{row.pk}/decide/", {"action": "reject"})
    after = page.get(REVIEW)

    assert listed.status_code == 200
    assert f'href="/models/import/{row.pk}/"'.encode() in listed.content
    assert b'<span class="conf dropped">0%</span>' in listed.content
    assert b"Reject</button>" not in listed.content  # viewers do not decide
    assert detail.status_code == 200
    assert b"No field could be mapped." in detail.content
    assert rejected.status_code == 302 and rejected["Location"] == REVIEW
    assert rows()[0].status == "rejected"
    assert b"Nothing waits for review." in after.content
    assert (
        viewer.post(
            f"/models/import/{row.pk}/decide/", {"action": "accept"}
        ).status_code
        == 403
    )


def test_save_for_review_holds_a_confident_result(tenant_a, page):
    page.post(PREVIEW, {"payload": json.dumps(s.ANTHROPIC_MODEL)}, **HTMX)
    (row,) = rows()
    assert row.status == "auto_accepted"

    page.post(f"/models/import/{row.pk}/decide/", {"action": "review"})

    assert rows()[0].status == "pending_review"
    assert b"Claude Sonnet 4 \xc2\xb7 chat" in page.get(REVIEW).content
