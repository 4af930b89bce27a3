"""Models pages: the list with filters and honest empty states, a model's versions
with their metadata sections, status buttons for editors only, and the import from
a provider's catalogue (htmx) with its per-item report."""

from __future__ import annotations

import re

import pytest
from django.urls import NoReverseMatch, reverse
from django_tenants.utils import schema_context

from apps.registry.models import ModelVersion
from tests.registry.model_helpers import (  # noqa: F401 (fixtures)
    UNUSED_URL,
    audit_of,
    catalogue_provider,
    make_httpserver,
    model_in,
    provider_in,
    rich_metadata,
    version_in,
)

LIST = "/models/"
IMPORT = "/models/import/provider/"
CATALOGUE = "/models/import/provider/catalogue/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def editor(tenant_a, make_user):  # type: ignore[no-untyped-def]
    return make_user(tenant_a, "editor", email="editor@alpha.test")


@pytest.fixture
def browser(tenant_a, editor, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant_a, editor)


@pytest.fixture
def viewer_browser(tenant_a, make_user, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant_a, make_user(tenant_a, "viewer"))


@pytest.fixture
def models(tenant_a):  # type: ignore[no-untyped-def]
    """churn: v1 archived, v2 active with rich metadata; llm: v1 from oai, draft."""
    oai = provider_in(tenant_a, name="oai", base_url=UNUSED_URL)
    churn = model_in(
        tenant_a,
        "Churn",
        task_type="classification",
        description="Who leaves next month",
        tags=["tabular"],
    )
    version_in(tenant_a, churn, status="archived")
    active = version_in(tenant_a, churn, status="active", metadata=rich_metadata())
    llm = model_in(tenant_a, "Assistant", task_type="chat")
    draft = version_in(
        tenant_a, llm, source="provider", provider=oai, external_id="gpt-4o-mini"
    )
    return {"churn": churn, "llm": llm, "oai": oai, "active": active, "draft": draft}


def names_listed(html: str) -> list[str]:
    return re.findall(r'<a href="/models/([\w-]+)/">', html)


def test_list_shows_models_with_version_counts_and_latest_version(browser, models):
    response = browser.get(LIST)
    html = response.content.decode()

    assert response.status_code == 200
    assert '<a href="/models/" aria-current="page">Models</a>' in html
    assert names_listed(html) == ["assistant", "churn"]
    churn_row = html[html.index('href="/models/churn/"') :].split("</tr>")[0]
    assert '<td class="num">2</td>' in churn_row
    assert 'v2 <span class="badge status-active">active</span>' in churn_row
    assert "Who leaves next month" in churn_row
    llm_row = html[html.index('href="/models/assistant/"') :].split("</tr>")[0]
    assert 'oai <span class="small">gpt-4o-mini</span>' in llm_row


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("search=leaves", ["churn"]),
        ("task_type=chat", ["assistant"]),
        ("status=active", ["churn"]),
        ("status=draft", ["assistant"]),
        ("provider=openai", ["assistant"]),
        ("tag=tabular", ["churn"]),
    ],
)
def test_list_filters(browser, models, query, expected):
    assert names_listed(browser.get(f"{LIST}?{query}").content.decode()) == expected


def test_list_filters_by_provider_from_the_select(browser, models):
    html = browser.get(f"{LIST}?provider={models['oai'].pk}").content.decode()

    assert names_listed(html) == ["assistant"]
    assert f'<option value="{models["oai"].pk}" selected>oai</option>' in html
    assert '<option value="openai">every openai provider</option>' in html


def test_a_filter_matching_nothing_says_so(browser, models):
    html = browser.get(f"{LIST}?search=nothing-like-this").content.decode()

    assert "No model matches these filters." in html
    assert "Show all 2</a>" in html


def _url_or_none(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def test_empty_state_points_editors_to_the_import_pages(tenant_a, browser):
    html = browser.get(LIST).content.decode()

    assert "No models yet." in html
    assert f'<a href="{IMPORT}">import from a provider\'s catalogue</a>' in html
    upload = _url_or_none("registry:model-upload")
    if upload:
        assert f'<a href="{upload}">upload a scikit-learn or ONNX file</a>' in html


def test_empty_state_for_viewers_names_who_can_add(viewer_browser):
    html = viewer_browser.get(LIST).content.decode()

    assert "No models yet. An editor of this organisation can import" in html
    assert IMPORT not in html


def test_detail_shows_versions_and_metadata_sections(browser, models):
    response = browser.get(f"{LIST}churn/")
    html = response.content.decode()

    assert response.status_code == 200
    rows = re.findall(r'<tr id="version-row-\d+">(.*?)</tr>', html, re.S)
    assert [re.search(r">v(\d+)</a>", r).group(1) for r in rows] == ["2", "1"]
    assert 'status-active">active' in rows[0] and 'status-archived">archived' in rows[1]
    # metrics: inline cards, every one of them, no "see all" modal
    cards = re.findall(
        r'data-metric="([^"]+)"><div class="num">([^<]+)</div><div>([^<]+)</div>', html
    )
    assert cards == [
        ("accuracy", "0.9134", "Accuracy"),
        ("auc", "0.9500", "AUC"),
        ("lift@10", "3.2000", "lift@10"),
    ]
    assert "see all" not in html.lower() and "modal" not in html.lower()
    assert "<h3>Model info</h3>" in html and "<td>tree_ensemble</td>" in html
    assert "<td>customers-2024q4</td>" in html
    assert (
        "<td><code>tenure_months</code></td><td>integer</td><td>yes</td>"
        "<td>≥ 0; ≤ 240</td>" in html
    )
    assert "<td>one of basic, pro</td>" in html
    assert '<th scope="row">Labels</th><td>stay, churn</td>' in html
    assert '<th scope="row">Input per 1k tokens</th><td>0.25 EUR</td>' in html
    assert "<p>Apache-2.0</p>" in html
    bars = re.findall(
        r'<span class="feature">([^<]+)</span> <progress max="100" value="([^"]+)"',
        html,
    )
    assert bars == [("tenure_months", "100.0"), ("plan", "50.0")]


def test_detail_of_a_model_without_versions_says_so(tenant_a, browser):
    model_in(tenant_a, "Bare")

    html = browser.get(f"{LIST}bare/").content.decode()

    assert "This model has no versions yet." in html
    assert "No metrics recorded" not in html


def test_editors_see_status_buttons_and_viewers_do_not(browser, viewer_browser, models):
    editor_html = browser.get(f"{LIST}churn/").content.decode()
    viewer_html = viewer_browser.get(f"{LIST}churn/").content.decode()
    active = models["active"].pk

    assert f'action="/models/churn/versions/{active}/archive/"' in editor_html
    assert f'action="/models/churn/versions/{active}/activate/"' not in editor_html
    assert editor_html.count(">Activate</button>") == 1  # v1, archived
    assert ">Activate</button>" not in viewer_html
    assert ">Archive</button>" not in viewer_html
    assert "<h3>Performance</h3>" in viewer_html


def test_activate_and_archive_from_the_page_are_audited(tenant_a, browser, models):
    draft = models["draft"]

    activated = browser.post(f"{LIST}assistant/versions/{draft.pk}/activate/")
    archived = browser.post(
        f"{LIST}assistant/versions/{draft.pk}/archive/", follow=True
    )

    assert activated.status_code == 302
    assert activated["Location"] == "/models/assistant/"
    assert "Assistant v1 is archived." in archived.content.decode()
    assert [e[1:] for e in audit_of(tenant_a, draft)[1:]] == [
        ({"status": "draft"}, {"status": "active"}),
        ({"status": "active"}, {"status": "archived"}),
    ]


def test_viewers_may_not_change_status(tenant_a, viewer_browser, models):
    draft = models["draft"]

    response = viewer_browser.post(f"{LIST}assistant/versions/{draft.pk}/activate/")

    assert response.status_code == 403
    with schema_context("alpha"):
        assert ModelVersion.objects.get(pk=draft.pk).status == "draft"


def test_status_change_needs_post_and_the_right_model(browser, models):
    draft = models["draft"]

    assert (
        browser.get(f"{LIST}assistant/versions/{draft.pk}/activate/").status_code == 405
    )
    assert browser.post(f"{LIST}churn/versions/{draft.pk}/activate/").status_code == 404


def test_another_tenants_models_are_invisible(tenant_a, tenant_b, browser, models):
    theirs = model_in(tenant_b, "Secret")
    their_version = version_in(tenant_b, theirs)

    assert browser.get(f"{LIST}secret/").status_code == 404
    assert (
        browser.post(f"{LIST}secret/versions/{their_version.pk}/activate/").status_code
        == 404
    )
    assert "Secret" not in browser.get(LIST).content.decode()
    with schema_context("beta"):
        assert ModelVersion.objects.get(pk=their_version.pk).status == "draft"


# --- import from a provider ---------------------------------------------------------


def test_import_page_offers_the_providers_and_loads_catalogues_with_htmx(
    tenant_a, browser
):
    oai = provider_in(tenant_a, name="oai", base_url=UNUSED_URL)

    html = browser.get(IMPORT).content.decode()

    assert f'hx-get="{CATALOGUE}"' in html and 'hx-target="#catalogue"' in html
    assert f'<option value="{oai.pk}">oai (openai)</option>' in html
    assert 'value="skip_errors"' in html and 'value="fail_fast"' in html


def test_import_page_without_providers_says_what_to_do(browser):
    html = browser.get(IMPORT).content.decode()

    assert "No providers are configured yet." in html
    assert "An admin of this organisation can add one." in html


def test_viewers_may_not_import(tenant_a, viewer_browser):
    assert viewer_browser.get(IMPORT).status_code == 403
    assert viewer_browser.get(CATALOGUE).status_code == 403
    assert viewer_browser.post(IMPORT, {}).status_code == 403


def test_catalogue_fragment_lists_models_and_marks_imported_ones(
    tenant_a, browser, httpserver
):
    provider = catalogue_provider(
        tenant_a, httpserver, ["gpt-4o", "gpt-4o-mini"], name="oai"
    )
    from apps.registry.services import model_import

    with schema_context("alpha"):
        model_import(provider=provider, external_id="gpt-4o", actor="test")

    response = browser.get(f"{CATALOGUE}?provider={provider.pk}", **HTMX)
    html = response.content.decode()

    assert response.status_code == 200
    assert "<html" not in html  # a fragment
    assert re.findall(r'name="external_ids" value="([^"]+)"', html) == [
        "gpt-4o",
        "gpt-4o-mini",
    ]
    assert "imported as oai/gpt-4o v1</a>" in html
    assert html.count("not imported") == 1


def test_catalogue_fragment_shows_the_provider_error(tenant_a, browser, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"error": {"message": "Incorrect API key provided"}}, status=401
    )
    provider = provider_in(tenant_a, name="oai", base_url=httpserver.url_for("/v1"))

    html = browser.get(f"{CATALOGUE}?provider={provider.pk}", **HTMX).content.decode()

    assert '<div class="flash error" role="alert">oai: The provider rejected' in html
    assert browser.get(f"{CATALOGUE}?provider=424242", **HTMX).status_code == 404


def test_import_ticked_models_renders_the_report(tenant_a, browser, httpserver):
    provider = catalogue_provider(
        tenant_a, httpserver, ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    )
    form = {
        "provider": provider.pk,
        "external_ids": ["gpt-4o-mini", "text-embedding-3-small"],
        "mode": "skip_errors",
    }

    first = browser.post(IMPORT, form)
    again = browser.post(IMPORT, {**form, "activate": "on"})

    html = first.content.decode()
    assert first.status_code == 200
    assert "2 created · 0 updated · 0 unchanged · 0 failed · 0 skipped" in html
    results = re.findall(r'<tr class="result-(\w+)"><td><code>([^<]+)</code>', html)
    assert results == [
        ("created", "gpt-4o-mini"),
        ("created", "text-embedding-3-small"),
    ]
    assert "0 created · 2 updated" in again.content.decode()
    with schema_context("alpha"):
        versions = {
            v.external_id: v for v in ModelVersion.objects.select_related("model").all()
        }
    assert sorted(versions) == ["gpt-4o-mini", "text-embedding-3-small"]
    embedding = versions["text-embedding-3-small"]
    assert embedding.metadata["model_info"]["capabilities"] == ["embedding"]
    assert embedding.model.task_type == "embedding"
    assert embedding.status == "active"
    assert f'<a href="/models/{embedding.model.slug}/">' in html


def test_import_refuses_an_overlong_id_and_imports_nothing(
    tenant_a, browser, httpserver
):
    provider = catalogue_provider(tenant_a, httpserver, ["gpt-4o"])

    response = browser.post(
        IMPORT,
        {
            "provider": provider.pk,
            "external_ids": ["gpt-4o", "x" * 300 + "-not-listed"],
            "mode": "fail_fast",
        },
    )

    assert response.status_code == 400
    assert "A model id is at most 300 characters." in response.content.decode()
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def test_import_refuses_null_characters(tenant_a, browser):
    provider = provider_in(tenant_a, name="oai", base_url=UNUSED_URL)

    response = browser.post(
        IMPORT,
        {"provider": provider.pk, "external_ids": ["a\x00"], "mode": "fail_fast"},
    )

    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()


def test_import_without_ticks_is_refused_and_keeps_the_catalogue(
    tenant_a, browser, httpserver
):
    provider = catalogue_provider(tenant_a, httpserver, ["gpt-4o"])

    response = browser.post(IMPORT, {"provider": provider.pk, "mode": "skip_errors"})
    html = response.content.decode()

    assert response.status_code == 400
    assert "Tick at least one model of the catalogue." in html
    assert 'name="external_ids" value="gpt-4o"' in html
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def test_list_page_query_count_does_not_grow_with_rows(tenant_a, browser):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    oai = provider_in(tenant_a, name="oai", base_url=UNUSED_URL)

    def make(start: int, count: int) -> None:
        for i in range(start, start + count):
            model = model_in(tenant_a, f"m{i:03d}", tags=["t"])
            version_in(
                tenant_a, model, source="provider", provider=oai, external_id=f"x{i}"
            )

    def reads() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert browser.get(LIST).status_code == 200
        # Not the list's reads: search paths, and the host's tenant when not remembered.
        return len(
            [
                q
                for q in ctx.captured_queries
                if not q["sql"].startswith("SET ") and "tenants_domain" not in q["sql"]
            ]
        )

    make(0, 2)
    small = reads()
    make(2, 10)

    assert reads() == small


# --- admin ---------------------------------------------------------------------------


@pytest.fixture
def admin_browser(tenant_a, make_user, page_client):  # type: ignore[no-untyped-def]
    return page_client(tenant_a, make_user(tenant_a, "admin"))


def test_admin_lists_models_versions_and_artifacts_read_only(
    tenant_a, admin_browser, models
):
    model_page = admin_browser.get(
        f"/admin/registry/registeredmodel/{models['churn'].pk}/change/"
    )
    versions = admin_browser.get("/admin/registry/modelversion/?status__exact=active")
    html = versions.content.decode()

    assert model_page.status_code == 200
    inline = re.findall(
        r'<td class="field-number">\s*<p>(\d+)</p>\s*</td>\s*'
        r'<td class="field-status">\s*<p>(\w+)</p>',
        model_page.content.decode(),
    )
    assert inline == [("2", "Active"), ("1", "Archived")]
    assert versions.status_code == 200
    assert "Churn v2" in html and "Assistant v1" not in html
    for name in ("status", "source", "provider"):
        assert f'<details data-filter-title="{name}" open>' in html
    assert admin_browser.get("/admin/registry/modelartifact/").status_code == 200
    assert admin_browser.get("/admin/registry/modelversion/add/").status_code == 403
    assert admin_browser.get("/admin/registry/modelartifact/add/").status_code == 403


def test_admin_writes_go_through_the_services(tenant_a, admin_browser, models):
    draft = models["draft"]
    created = admin_browser.post(
        "/admin/registry/registeredmodel/add/",
        {
            "name": "Import",
            "description": "",
            "task_type": "other",
            "tags": "[]",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    changed = admin_browser.post(
        f"/admin/registry/modelversion/{draft.pk}/change/", {"status": "active"}
    )

    assert created.status_code == 302, created.content.decode()[:2000]
    assert changed.status_code == 302, changed.content.decode()[:2000]
    from apps.registry.models import RegisteredModel

    with schema_context("alpha"):
        made = RegisteredModel.objects.get(name="Import")
        assert ModelVersion.objects.get(pk=draft.pk).status == "active"
    assert made.slug == "import-model"
    assert [a for a, _, _ in audit_of(tenant_a, made)] == ["model.create"]
    assert audit_of(tenant_a, draft)[-1][1:] == (
        {"status": "draft"},
        {"status": "active"},
    )
