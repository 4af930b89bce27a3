"""/api/v1/models/: models and versions through the services, filters, imports from a
provider's catalogue (one, batch, catalogue, validate), roles, tenant isolation and
a list whose query count does not grow with its rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.registry.models import ModelVersion, RegisteredModel
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

URL = "/api/v1/models/"
VERSIONS = f"{URL}versions/"
VOLATILE = {"id", "created_at", "updated_at"}


@pytest.fixture
def editor(tenant_a, make_user):  # type: ignore[no-untyped-def]
    return make_user(tenant_a, "editor", email="editor@alpha.test")


@pytest.fixture
def client(tenant_a, editor, api_client):  # type: ignore[no-untyped-def]
    return api_client(tenant_a, user=editor)


@pytest.fixture
def oai(tenant_a):  # type: ignore[no-untyped-def]
    """An OpenAI provider nobody calls (its URL is a closed port)."""
    return provider_in(tenant_a, name="oai", base_url=UNUSED_URL)


def without(body: dict, keys: set[str] = VOLATILE) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


def slugs(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content
    return [row["slug"] for row in response.json()["results"]]


def error_fields(response) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    return response.json()["error"]["fields"]


# --- models --------------------------------------------------------------------------


def test_create_returns_the_model_with_its_slug_and_no_versions(tenant_a, client):
    response = client.post(
        URL,
        {
            "name": "Churn predictor",
            "description": "Who leaves next month",
            "task_type": "classification",
            "tags": ["tabular", "churn", "tabular"],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert without(response.json()) == {
        "name": "Churn predictor",
        "slug": "churn-predictor",
        "description": "Who leaves next month",
        "task_type": "classification",
        "tags": ["tabular", "churn"],
        "owner": "editor@alpha.test",
        "version_count": 0,
        "latest_version": None,
    }
    with schema_context("alpha"):
        model = RegisteredModel.objects.get(slug="churn-predictor")
    assert audit_of(tenant_a, model) == [
        (
            "model.create",
            None,
            {"name": "Churn predictor", "task_type": "classification"},
        )
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "m", "task_type": "telepathy"}, "task_type"),
        ({"name": "m", "tags": "not-a-list"}, "tags"),
        ({"name": "m", "tags": ["has space"]}, "tags.0"),
        ({"name": "m", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"name": "m", "description": 5 * "x" * 1001}, "description"),
    ],
)
def test_create_with_bad_input_is_400_naming_the_field(client, body, field):
    response = client.post(URL, body, format="json")

    assert list(error_fields(response)) == [field]


def test_create_with_a_taken_name_is_409(tenant_a, client):
    model_in(tenant_a, "Churn")

    response = client.post(URL, {"name": "Churn"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "conflict",
        "message": "A model named 'Churn' exists.",
        "fields": {"name": ["taken"]},
    }


def test_a_reserved_word_never_becomes_a_slug(client):
    created = client.post(URL, {"name": "Import"}, format="json").json()

    assert created["slug"] == "import-model"
    assert client.get(f"{URL}import-model/").json()["name"] == "Import"


def test_update_and_patch_change_fields_keep_the_slug_and_are_audited(tenant_a, client):
    model = model_in(tenant_a, "Churn", tags=["a"])
    detail = f"{URL}{model.slug}/"

    patched = client.patch(
        detail, {"description": "v2 of the churn work", "tags": ["b"]}, format="json"
    )
    put = client.put(
        detail, {"name": "Churn (EU)", "task_type": "regression"}, format="json"
    )

    assert patched.status_code == 200, patched.content
    assert patched.json()["description"] == "v2 of the churn work"
    assert patched.json()["tags"] == ["b"]
    assert put.status_code == 200, put.content
    assert without(put.json(), VOLATILE | {"owner"}) == {
        "name": "Churn (EU)",
        "slug": "churn",
        "description": "v2 of the churn work",
        "task_type": "regression",
        "tags": ["b"],
        "version_count": 0,
        "latest_version": None,
    }
    assert [a for a, _, _ in audit_of(tenant_a, model)] == [
        "model.create",
        "model.update",
        "model.update",
    ]
    assert audit_of(tenant_a, model)[2][1:] == (
        {"name": "Churn", "task_type": "other"},
        {"name": "Churn (EU)", "task_type": "regression"},
    )


def test_unknown_slug_is_404_in_the_envelope(client):
    response = client.get(f"{URL}nope/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.fixture
def catalogue(tenant_a, oai):  # type: ignore[no-untyped-def]
    """Three models: churn (upload v1 archived, v2 active), llm (oai v1 draft),
    empty (no versions); a second provider of another kind."""
    churn = model_in(
        tenant_a,
        "Churn",
        description="tabular churn model",
        task_type="classification",
        tags=["tabular", "prod"],
    )
    version_in(tenant_a, churn, status="archived")
    version_in(tenant_a, churn, status="active", metadata=rich_metadata())
    llm = model_in(tenant_a, "Assistant LLM", task_type="chat", tags=["llm"])
    version_in(tenant_a, llm, source="provider", provider=oai, external_id="gpt-4o")
    model_in(tenant_a, "Empty", description="nothing yet: churn later")
    hf = provider_in(tenant_a, name="hf", kind="huggingface", base_url=UNUSED_URL)
    return {"churn": churn, "llm": llm, "hf": hf, "oai": oai}


def test_list_rows_carry_the_version_count_and_latest_version(client, catalogue):
    response = client.get(URL)

    assert response.status_code == 200
    rows = {row["slug"]: row for row in response.json()["results"]}
    assert list(rows) == ["assistant-llm", "churn", "empty"]
    assert rows["churn"]["version_count"] == 2
    assert without(rows["churn"]["latest_version"]) == {
        "number": 2,
        "status": "active",
        "source": "upload",
        "provider": None,
        "provider_name": None,
        "provider_kind": None,
        "external_id": "",
    }
    assert without(rows["assistant-llm"]["latest_version"]) == {
        "number": 1,
        "status": "draft",
        "source": "provider",
        "provider": catalogue["oai"].pk,
        "provider_name": "oai",
        "provider_kind": "openai",
        "external_id": "gpt-4o",
    }
    assert rows["empty"]["version_count"] == 0
    assert rows["empty"]["latest_version"] is None
    assert response.json()["count"] == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("search=churn", ["churn", "empty"]),
        ("search=TABULAR", ["churn"]),
        ("task_type=chat", ["assistant-llm"]),
        ("status=active", ["churn"]),
        ("status=archived", ["churn"]),
        ("status=draft", ["assistant-llm"]),
        ("provider=openai", ["assistant-llm"]),
        ("provider=huggingface", []),
        ("tag=prod", ["churn"]),
        ("tag=pro", []),
        ("search=churn&status=active", ["churn"]),
    ],
)
def test_list_filters(client, catalogue, query, expected):
    assert slugs(client.get(f"{URL}?{query}")) == expected


def test_list_filters_by_provider_id(client, catalogue):
    assert slugs(client.get(f"{URL}?provider={catalogue['oai'].pk}")) == [
        "assistant-llm"
    ]
    assert slugs(client.get(f"{URL}?provider={catalogue['hf'].pk}")) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("provider=nonsense", "provider"),
        ("status=retired", "status"),
        ("task_type=telepathy", "task_type"),
        ("provider=99999999999999999999999", "provider"),
    ],
)
def test_list_bad_filter_is_400_naming_it(client, catalogue, query, field):
    assert list(error_fields(client.get(f"{URL}?{query}"))) == [field]


def test_list_query_count_does_not_grow_with_rows(tenant_a, client, oai):
    def make(count: int, start: int) -> None:
        for i in range(start, start + count):
            model = model_in(tenant_a, f"m{i:03d}")
            version_in(tenant_a, model)
            version_in(
                tenant_a, model, source="provider", provider=oai, external_id=f"x{i}"
            )

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(URL)
        assert response.status_code == 200
        # django-tenants sets the search path before each query, and looks the host
        # up when this process has not seen it for a while: not the list's reads.
        return [
            q["sql"]
            for q in ctx.captured_queries
            if not q["sql"].startswith("SET search_path")
            and "tenants_domain" not in q["sql"]
        ]

    make(2, 0)
    small = queries()
    make(12, 2)
    large = queries()

    assert client.get(URL).json()["count"] == 14
    assert len(small) == len(large)
    # The registry's share: the count, the page of models, their latest versions.
    assert len([q for q in large if "registry_" in q]) == 3


def test_delete_archives_the_drafts_and_keeps_the_model(tenant_a, client):
    model = model_in(tenant_a, "Old")
    one = version_in(tenant_a, model)
    two = version_in(tenant_a, model, status="archived")

    response = client.delete(f"{URL}{model.slug}/")

    assert response.status_code == 200, response.content
    assert response.json()["latest_version"]["status"] == "archived"
    with schema_context("alpha"):
        statuses = list(
            ModelVersion.objects.filter(model=model)
            .order_by("number")
            .values_list("status", flat=True)
        )
    assert statuses == ["archived", "archived"]
    assert audit_of(tenant_a, one)[-1] == (
        "version.status",
        {"status": "draft"},
        {"status": "archived"},
    )
    assert [a for a, _, _ in audit_of(tenant_a, two)] == ["version.create"]
    assert client.get(f"{URL}{model.slug}/").status_code == 200


def test_delete_is_refused_while_a_version_is_active(tenant_a, client):
    model = model_in(tenant_a, "Live")
    draft = version_in(tenant_a, model)
    version_in(tenant_a, model, status="active")

    response = client.delete(f"{URL}{model.slug}/")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "active_versions",
        "message": "'Live' has active versions (v2); archive them first.",
        "fields": {"versions": ["v2"]},
    }
    with schema_context("alpha"):
        assert ModelVersion.objects.get(pk=draft.pk).status == "draft"


# --- versions ------------------------------------------------------------------------


def test_create_an_upload_version_with_metadata(tenant_a, client, editor):
    model = model_in(tenant_a, "Churn")
    version_in(tenant_a, model)

    response = client.post(
        f"{URL}{model.slug}/versions/",
        {"source": "upload", "metadata": rich_metadata(), "lineage": {"run": "r1"}},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = without(response.json())
    assert body["metadata"]["performance"] == {
        "accuracy": 0.9134,
        "auc": 0.95,
        "extra": {"lift@10": 3.2},
    }
    assert without(body, {"metadata"}) == {
        "model": "churn",
        "model_name": "Churn",
        "number": 2,
        "status": "draft",
        "source": "upload",
        "provider": None,
        "provider_name": None,
        "provider_kind": None,
        "external_id": "",
        "metrics": {"accuracy": 0.9134, "auc": 0.95, "extra": {"lift@10": 3.2}},
        "input_schema": [
            {
                "name": "tenure_months",
                "type": "integer",
                "required": True,
                "constraints": {"minimum": 0.0, "maximum": 240.0},
            },
            {
                "name": "plan",
                "type": "categorical",
                "required": False,
                "constraints": {"enum": ["basic", "pro"]},
            },
        ],
        "output_schema": {"type": "categorical", "labels": ["stay", "churn"]},
        "lineage": {"run": "r1"},
        "parent": None,
        "created_by": "editor@alpha.test",
    }


def test_create_a_provider_version_fills_in_the_provider(tenant_a, client, oai):
    model = model_in(tenant_a, "Assistant")

    response = client.post(
        f"{URL}{model.slug}/versions/",
        {
            "source": "provider",
            "provider_id": oai.pk,
            "external_id": "gpt-4o-mini",
            "activate": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["provider"], body["provider_kind"]) == (
        "active",
        oai.pk,
        "openai",
    )
    assert body["metadata"] == {
        "model_info": {"provider": "openai", "external_id": "gpt-4o-mini"}
    }
    again = client.post(
        f"{URL}{model.slug}/versions/",
        {"source": "provider", "provider_id": oai.pk, "external_id": "gpt-4o-mini"},
        format="json",
    )
    assert again.status_code == 409
    assert again.json()["error"]["fields"] == {"external_id": ["already registered"]}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["source"]),
        ({"source": "training"}, ["source"]),
        ({"source": "provider"}, ["provider_id", "external_id"]),
        ({"source": "provider", "provider_id": 0, "external_id": "x"}, ["provider_id"]),
        ({"source": "upload", "external_id": "x"}, ["external_id"]),
        ({"source": "upload", "metadata": []}, ["metadata"]),
        (
            {"source": "upload", "metadata": {"performance": {"accuracy": 1.5}}},
            ["metadata.performance.accuracy"],
        ),
        (
            {
                "source": "upload",
                "metadata": {
                    "input_schema": [
                        {"name": "a", "type": "number"},
                        {"name": "a", "type": "number"},
                    ]
                },
            },
            ["metadata.input_schema"],
        ),
        ({"source": "upload", "parent_id": 999999}, ["parent_id"]),
        ({"source": "upload", "lineage": "r1"}, ["lineage"]),
    ],
)
def test_create_version_bad_input_is_400_naming_the_field(
    tenant_a, client, body, fields
):
    model = model_in(tenant_a, "Churn")

    response = client.post(f"{URL}{model.slug}/versions/", body, format="json")

    assert sorted(error_fields(response)) == sorted(fields)
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def test_a_huggingface_version_follows_the_provider_rules(tenant_a, client):
    hf = provider_in(tenant_a, name="hf", kind="huggingface", base_url=UNUSED_URL)
    model = model_in(tenant_a, "Sentiment")
    body = {"source": "provider", "provider_id": hf.pk, "external_id": "acme/bert"}

    refused = client.post(f"{URL}{model.slug}/versions/", body, format="json")
    body["metadata"] = {
        "model_info": {"repo_id": "acme/bert", "task": "text-classification"}
    }
    accepted = client.post(f"{URL}{model.slug}/versions/", body, format="json")

    assert sorted(error_fields(refused)) == [
        "metadata.model_info.repo_id",
        "metadata.model_info.task",
    ]
    assert accepted.status_code == 201, accepted.content


def test_model_versions_list_is_newest_first(tenant_a, client):
    model = model_in(tenant_a, "Churn")
    for _ in range(3):
        version_in(tenant_a, model)
    other = model_in(tenant_a, "Other")
    version_in(tenant_a, other)

    response = client.get(f"{URL}{model.slug}/versions/")

    assert response.status_code == 200
    assert [v["number"] for v in response.json()["results"]] == [3, 2, 1]
    assert client.get(f"{URL}nope/versions/").status_code == 404


def test_flat_version_list_filters(tenant_a, client, oai):
    churn = model_in(tenant_a, "Churn")
    upload = version_in(tenant_a, churn, status="active")
    llm = model_in(tenant_a, "LLM")
    mini = version_in(
        tenant_a, llm, source="provider", provider=oai, external_id="gpt-4o-mini"
    )

    def ids(query: str) -> list[int]:
        response = client.get(f"{VERSIONS}?{query}")
        assert response.status_code == 200, response.content
        return [v["id"] for v in response.json()["results"]]

    assert ids("") == [mini.pk, upload.pk]
    assert ids("model=churn") == [upload.pk]
    assert ids("provider=openai") == [mini.pk]
    assert ids(f"provider={oai.pk}") == [mini.pk]
    assert ids("status=active") == [upload.pk]
    assert ids("source=provider") == [mini.pk]
    assert ids("external_id=gpt-4o-mini") == [mini.pk]
    assert ids("model=nope") == []
    assert list(error_fields(client.get(f"{VERSIONS}?source=magic"))) == ["source"]


def test_patch_replaces_metadata_and_metrics_follow(tenant_a, client):
    model = model_in(tenant_a, "Churn")
    version = version_in(tenant_a, model, metadata={"license": "MIT"})

    response = client.patch(
        f"{VERSIONS}{version.pk}/",
        {"metadata": {"performance": {"f1": 0.8}, "license": "Apache-2.0"}},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["metadata"] == {
        "performance": {"f1": 0.8},
        "license": "Apache-2.0",
    }
    assert response.json()["metrics"] == {"f1": 0.8}
    assert audit_of(tenant_a, version)[-1] == (
        "version.metadata",
        {"license": "MIT"},
        {"performance": {"f1": 0.8}, "license": "Apache-2.0"},
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "metadata"),
        ({"metadata": {"pricing": {"currency": "euro"}}}, "metadata.pricing.currency"),
        ({"metadata": {}, "status": "active"}, "status"),
    ],
)
def test_patch_bad_input_is_400(tenant_a, client, body, field):
    version = version_in(tenant_a, model_in(tenant_a, "Churn"))

    response = client.patch(f"{VERSIONS}{version.pk}/", body, format="json")

    assert list(error_fields(response)) == [field]


def test_activate_and_archive_are_audited(tenant_a, client):
    version = version_in(tenant_a, model_in(tenant_a, "Churn"))

    activated = client.post(f"{VERSIONS}{version.pk}/activate/")
    again = client.post(f"{VERSIONS}{version.pk}/activate/")
    archived = client.post(f"{VERSIONS}{version.pk}/archive/")

    assert (activated.status_code, activated.json()["status"]) == (200, "active")
    assert again.json()["status"] == "active"
    assert (archived.status_code, archived.json()["status"]) == (200, "archived")
    assert audit_of(tenant_a, version) == [
        (
            "version.create",
            None,
            {
                "model": "Churn",
                "number": 1,
                "source": "upload",
                "external_id": "",
                "status": "draft",
            },
        ),
        ("version.status", {"status": "draft"}, {"status": "active"}),
        ("version.status", {"status": "active"}, {"status": "archived"}),
    ]
    assert client.post(f"{VERSIONS}999999/activate/").status_code == 404


# --- import ---------------------------------------------------------------------------


def test_import_one_with_discovery_takes_the_catalogue_entry(
    tenant_a, client, httpserver
):
    provider = catalogue_provider(
        tenant_a,
        httpserver,
        ["gpt-4o-mini", "text-embedding-3-small"],
        name="oai",
        price_per_1k_input="0.15",
    )

    response = client.post(
        f"{URL}import/",
        {"provider_id": provider.pk, "external_id": "gpt-4o-mini", "discover": True},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert without(body, {"version"}) == {
        "external_id": "gpt-4o-mini",
        "status": "created",
        "version_id": body["version"]["id"],
        "model": "oai/gpt-4o-mini",
        "reason": "",
        "fields": {},
    }
    assert body["version"]["metadata"] == {
        "model_info": {
            "provider": "openai",
            "external_id": "gpt-4o-mini",
            "name": "gpt-4o-mini",
            "capabilities": ["chat", "completion"],
            "architecture": "transformer",
            "modalities": ["text"],
            "task": "chat",
        },
        "pricing": {"input_per_1k": 0.15, "output_per_1k": 0.0},
    }
    with schema_context("alpha"):
        model = RegisteredModel.objects.get(name="oai/gpt-4o-mini")
    assert (model.task_type, body["version"]["model"]) == ("chat", model.slug)


def test_importing_twice_is_unchanged_then_updated_never_a_duplicate(
    tenant_a, client, httpserver
):
    provider = catalogue_provider(tenant_a, httpserver, ["gpt-4o"], name="oai")
    body = {"provider_id": provider.pk, "external_id": "gpt-4o", "discover": True}

    first = client.post(f"{URL}import/", body, format="json")
    second = client.post(f"{URL}import/", body, format="json")
    third = client.post(f"{URL}import/", {**body, "activate": True}, format="json")

    assert [r.status_code for r in (first, second, third)] == [201, 200, 200]
    assert [r.json()["status"] for r in (first, second, third)] == [
        "created",
        "unchanged",
        "updated",
    ]
    assert len({r.json()["version_id"] for r in (first, second, third)}) == 1
    assert third.json()["version"]["status"] == "active"
    with schema_context("alpha"):
        assert ModelVersion.objects.count() == 1
        assert RegisteredModel.objects.count() == 1


def test_import_with_discovery_of_an_unlisted_model_is_404(
    tenant_a, client, httpserver
):
    provider = catalogue_provider(tenant_a, httpserver, ["gpt-4o"], name="oai")

    response = client.post(
        f"{URL}import/",
        {"provider_id": provider.pk, "external_id": "gpt-9", "discover": True},
        format="json",
    )

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "'gpt-9' is not in the catalogue of provider 'oai'.",
        "fields": {"external_id": ["'gpt-9' is not in the catalogue."]},
    }
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def test_import_with_discovery_passes_on_the_provider_error(
    tenant_a, client, httpserver
):
    httpserver.expect_request("/v1/models").respond_with_json(
        {"error": {"message": "Incorrect API key provided"}}, status=401
    )
    provider = provider_in(tenant_a, name="oai", base_url=httpserver.url_for("/v1"))

    response = client.post(
        f"{URL}import/",
        {"provider_id": provider.pk, "external_id": "gpt-4o", "discover": True},
        format="json",
    )

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "auth"
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def test_import_without_discovery_calls_nobody(tenant_a, client, oai):
    response = client.post(
        f"{URL}import/",
        {
            "provider_id": oai.pk,
            "external_id": "gpt-4o",
            "model_name": "Assistant",
            "metadata": {"model_info": {"context_window": 128000}},
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["model"] == "Assistant"
    assert response.json()["version"]["metadata"] == {
        "model_info": {
            "provider": "openai",
            "external_id": "gpt-4o",
            "context_window": 128000,
        }
    }


OAI = "the oai provider's id"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["external_id", "provider_id"]),
        ({"provider_id": "abc", "external_id": "x"}, ["provider_id"]),
        ({"provider_id": 10**30, "external_id": "x"}, ["provider_id"]),
        ({"provider_id": OAI, "external_id": "x" * 301}, ["external_id"]),
        (
            {"provider_id": OAI, "external_id": "x", "metadata": {"model_info": "a"}},
            ["metadata.model_info"],
        ),
        (
            {
                "provider_id": OAI,
                "external_id": "x",
                "metadata": {"model_info": {"context_window": 0}},
            },
            ["metadata.model_info.context_window"],
        ),
        (
            {"provider_id": OAI, "external_id": "x", "metadata": {}, "discover": True},
            ["metadata"],
        ),
        (
            {"provider_id": OAI, "external_id": "x", "model_name": "n" * 201},
            ["model_name"],
        ),
    ],
)
def test_import_bad_input_is_400_naming_the_field(tenant_a, client, oai, body, fields):
    body = {k: oai.pk if v == OAI else v for k, v in body.items()}

    response = client.post(f"{URL}import/", body, format="json")

    assert sorted(error_fields(response)) == fields
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def _items(count: int, bad: set[int]) -> list[dict]:
    """Five kinds of bad item: no id, bad metadata, metadata not an object, an id
    too long, a model_info that is not an object."""
    items = []
    for i in range(count):
        item: dict = {"external_id": f"model-{i:02d}"}
        if i in bad:
            kind = sorted(bad).index(i)
            item = [
                {"external_id": ""},
                {
                    "external_id": f"model-{i:02d}",
                    "metadata": {"pricing": {"input_per_1k": -1}},
                },
                {
                    "external_id": f"model-{i:02d}",
                    "metadata": {"performance": {"accuracy": 2}},
                },
                {"external_id": "y" * 301},
                {"external_id": f"model-{i:02d}", "metadata": {"model_info": []}},
            ][kind]
        items.append(item)
    return items


def test_batch_skip_errors_creates_the_good_and_reports_the_bad(tenant_a, client, oai):
    bad = {3, 10, 21, 30, 44}

    response = client.post(
        f"{URL}import/batch/",
        {"provider_id": oai.pk, "items": _items(50, bad), "mode": "skip_errors"},
        format="json",
    )

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["summary"] == {
        "created": 45,
        "updated": 0,
        "unchanged": 0,
        "failed": 5,
        "skipped": 0,
    }
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert [
        (r["external_id"][:10], r["reason"], sorted(r["fields"])) for r in failed
    ] == [
        ("", "An external model id is needed.", ["external_id"]),
        ("model-10", "The metadata is not valid.", ["metadata"]),
        ("model-21", "The metadata is not valid.", ["metadata"]),
        ("y" * 10, "The import item is not valid.", ["external_id"]),
        ("model-44", "The import item is not valid.", ["metadata"]),
    ]
    assert "accuracy" in failed[2]["fields"]["metadata"][0]
    with schema_context("alpha"):
        assert ModelVersion.objects.count() == 45
        assert RegisteredModel.objects.count() == 45
        assert not ModelVersion.objects.filter(external_id="model-10").exists()


def test_batch_fail_fast_creates_nothing(tenant_a, client, oai):
    response = client.post(
        f"{URL}import/batch/",
        {
            "provider_id": oai.pk,
            "items": _items(50, {3, 10, 21, 30, 44}),
            "mode": "fail_fast",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["summary"] == {
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "failed": 1,
        "skipped": 49,
    }
    assert report["results"][3]["status"] == "failed"
    assert report["results"][0]["reason"] == "rolled back: an item failed"
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()
        assert not RegisteredModel.objects.exists()
        assert not AuditEvent.objects.filter(action="version.create").exists()


def test_batch_again_reports_unchanged_and_activate_updates(tenant_a, client, oai):
    body = {"provider_id": oai.pk, "items": _items(3, set())}

    client.post(f"{URL}import/batch/", body, format="json")
    again = client.post(f"{URL}import/batch/", body, format="json").json()
    active = client.post(
        f"{URL}import/batch/", {**body, "activate": True}, format="json"
    ).json()

    assert again["mode"] == "skip_errors"
    assert again["summary"]["unchanged"] == 3
    assert active["summary"]["updated"] == 3
    with schema_context("alpha"):
        assert (
            list(ModelVersion.objects.values_list("status", flat=True))
            == ["active"] * 3
        )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"items": []}, ["items"]),
        ({"items": "model-1"}, ["items"]),
        ({"items": ["model-1"]}, ["items.0.non_field_errors"]),
        ({"items": [{"external_id": "a"}], "mode": "yolo"}, ["mode"]),
        ({"items": [{"external_id": {"id": 1}}]}, ["items.0.external_id"]),
        ({"items": [{"external_id": "a"}] * 501}, ["items"]),
        ({"provider_id": 999999, "items": [{"external_id": "a"}]}, ["provider_id"]),
    ],
)
def test_batch_malformed_request_is_400(tenant_a, client, oai, body, fields):
    response = client.post(
        f"{URL}import/batch/", {"provider_id": oai.pk, **body}, format="json"
    )

    assert sorted(error_fields(response)) == fields
    with schema_context("alpha"):
        assert not ModelVersion.objects.exists()


def test_catalogue_marks_what_is_already_imported(tenant_a, client, httpserver):
    provider = catalogue_provider(
        tenant_a, httpserver, ["gpt-4o", "gpt-4o-mini"], name="oai"
    )
    imported = client.post(
        f"{URL}import/",
        {"provider_id": provider.pk, "external_id": "gpt-4o", "discover": True},
        format="json",
    ).json()

    response = client.get(f"{URL}import/catalogue/?provider_id={provider.pk}")

    assert response.status_code == 200, response.content
    assert response.json() == [
        {
            "id": "gpt-4o",
            "name": "gpt-4o",
            "owned_by": "me",
            "created": 1700000000,
            "capabilities": ["chat", "completion"],
            "context_window": None,
            "max_output_tokens": None,
            "imported": True,
            "version_id": imported["version_id"],
            "version_number": 1,
            "version_status": "draft",
            "model": imported["version"]["model"],
        },
        {
            "id": "gpt-4o-mini",
            "name": "gpt-4o-mini",
            "owned_by": "me",
            "created": 1700000000,
            "capabilities": ["chat", "completion"],
            "context_window": None,
            "max_output_tokens": None,
            "imported": False,
            "version_id": None,
            "version_number": None,
            "version_status": None,
            "model": None,
        },
    ]


@pytest.mark.parametrize(
    "query", ["", "?provider_id=", "?provider_id=abc", "?provider_id=424242"]
)
def test_catalogue_needs_a_provider_of_this_tenant(client, query):
    assert list(error_fields(client.get(f"{URL}import/catalogue/{query}"))) == [
        "provider_id"
    ]


def test_validate_says_what_an_import_would_do_without_saving(tenant_a, client, oai):
    url = f"{URL}import/validate/"
    item = {
        "provider_id": oai.pk,
        "external_id": "gpt-4o",
        "metadata": {"license": "proprietary"},
    }

    fresh = client.post(url, item, format="json")
    client.post(f"{URL}import/", item, format="json")
    same = client.post(url, item, format="json")
    changed = client.post(
        url, {**item, "metadata": {"license": "other"}}, format="json"
    )

    assert fresh.status_code == 200, fresh.content
    assert fresh.json() == {
        "valid": True,
        "errors": {},
        "warnings": [],
        "action": "create",
        "version_id": None,
        "model": "oai/gpt-4o",
        "metadata": {
            "model_info": {"provider": "openai", "external_id": "gpt-4o"},
            "license": "proprietary",
        },
    }
    with schema_context("alpha"):
        version = ModelVersion.objects.get()
    assert (same.json()["action"], same.json()["version_id"]) == (
        "unchanged",
        version.pk,
    )
    assert same.json()["warnings"] == [
        "Already imported as oai/gpt-4o v1: importing again updates that version, "
        "never duplicates it."
    ]
    assert changed.json()["action"] == "update"
    with schema_context("alpha"):
        assert ModelVersion.objects.get().metadata["license"] == "proprietary"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, ["external_id", "provider_id"]),
        ({"provider_id": "x", "external_id": "a"}, ["provider_id"]),
        ({"provider_id": 424242, "external_id": "a"}, ["provider_id"]),
        ({"external_id": ""}, ["external_id"]),
        (
            {"external_id": "a", "metadata": {"performance": {"auc": 3}}},
            ["metadata.performance.auc"],
        ),
        ({"external_id": "a", "metadata": "x"}, ["metadata"]),
        ({"external_id": "a", "model_name": "n" * 201}, ["model_name"]),
    ],
)
def test_validate_reports_errors_by_field(tenant_a, client, oai, body, errors):
    if "provider_id" not in body and body:
        body = {"provider_id": oai.pk, **body}

    response = client.post(f"{URL}import/validate/", body, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["valid"] is False
    assert sorted(response.json()["errors"]) == errors
    assert response.json()["action"] is None


def test_validate_applies_the_provider_rules(tenant_a, client):
    hf = provider_in(tenant_a, name="hf", kind="huggingface", base_url=UNUSED_URL)

    response = client.post(
        f"{URL}import/validate/",
        {"provider_id": hf.pk, "external_id": "acme/bert"},
        format="json",
    )

    # Without metadata the import would register what discovery gives: the repo id
    # is the model id, but nothing says the task.
    assert response.json()["errors"] == {
        "metadata.model_info.task": ["HuggingFace models need a task."]
    }


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "churn/versions/",
            {"source": "upload", "lineage": {"a": "\u0000"}},
            "lineage.a",
        ),
        (
            "churn/versions/",
            {"source": "upload", "metadata": {"feature_importance": {"\u0000": 1}}},
            "metadata.feature_importance",
        ),
        (
            "import/batch/",
            {"items": [{"external_id": "a", "metadata": {"license": "\u0000"}}]},
            "items.0.metadata.license",
        ),
        (
            "import/batch/",
            {"items": [{"external_id": "a\u0000"}]},
            "items.0.external_id",
        ),
    ],
)
def test_text_postgres_cannot_store_is_400_not_500(
    tenant_a, client, oai, path, body, field
):
    model_in(tenant_a, "Churn")

    response = client.post(
        f"{URL}{path}", {"provider_id": oai.pk, **body}, format="json"
    )

    assert error_fields(response) == {field: ["Null characters are not allowed."]}


# --- isolation and roles --------------------------------------------------------------


def test_another_tenants_models_versions_and_providers_are_invisible(
    tenant_a, tenant_b, client
):
    theirs = model_in(tenant_b, "Secret model")
    their_version = version_in(tenant_b, theirs)
    their_provider = provider_in(tenant_b, name="their-oai", base_url=UNUSED_URL)
    model_in(tenant_a, "Mine")

    assert slugs(client.get(URL)) == ["mine"]
    assert client.get(f"{URL}{theirs.slug}/").status_code == 404
    assert client.patch(f"{URL}{theirs.slug}/", {"name": "x"}).status_code == 404
    assert client.delete(f"{URL}{theirs.slug}/").status_code == 404
    assert client.get(f"{URL}{theirs.slug}/versions/").status_code == 404
    assert client.get(f"{VERSIONS}{their_version.pk}/").status_code == 404
    assert client.post(f"{VERSIONS}{their_version.pk}/activate/").status_code == 404
    assert client.get(VERSIONS).json()["results"] == []
    refused = client.post(
        f"{URL}import/",
        {"provider_id": their_provider.pk, "external_id": "gpt-4o"},
        format="json",
    )
    assert list(error_fields(refused)) == ["provider_id"]
    with schema_context("beta"):
        assert ModelVersion.objects.get(pk=their_version.pk).status == "draft"
        assert RegisteredModel.objects.get(pk=theirs.pk).name == "Secret model"


def test_viewers_read_and_may_not_write(tenant_a, make_user, api_client, oai):
    model = model_in(tenant_a, "Churn")
    version = version_in(tenant_a, model)
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))

    assert viewer.get(URL).status_code == 200
    assert viewer.get(f"{URL}{model.slug}/").status_code == 200
    assert viewer.get(f"{VERSIONS}{version.pk}/").status_code == 200
    refused = [
        viewer.post(URL, {"name": "x"}, format="json"),
        viewer.patch(f"{URL}{model.slug}/", {"name": "x"}, format="json"),
        viewer.delete(f"{URL}{model.slug}/"),
        viewer.post(f"{URL}{model.slug}/versions/", {"source": "upload"}),
        viewer.post(f"{VERSIONS}{version.pk}/activate/"),
        viewer.patch(f"{VERSIONS}{version.pk}/", {"metadata": {}}, format="json"),
        viewer.post(
            f"{URL}import/", {"provider_id": oai.pk, "external_id": "a"}, format="json"
        ),
        viewer.post(f"{URL}import/batch/", {}, format="json"),
        viewer.post(f"{URL}import/validate/", {}, format="json"),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert refused[0].json()["error"]["message"] == (
        "This needs the editor role; you are viewer."
    )
    with schema_context("alpha"):
        assert ModelVersion.objects.get().status == "draft"


def test_manage_keys_may_and_predict_keys_may_not(tenant_a, make_key, api_client):
    model = model_in(tenant_a, "Churn")
    _, manage = make_key(tenant_a, "manage")
    _, predict = make_key(tenant_a, "predict")

    created = api_client(tenant_a, key=manage).post(
        f"{URL}{model.slug}/versions/", {"source": "upload"}, format="json"
    )
    refused = api_client(tenant_a, key=predict).get(URL)
    anonymous = api_client(tenant_a).get(URL)

    assert created.status_code == 201, created.content
    assert created.json()["created_by"].startswith("api-key:")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert anonymous.status_code in (401, 403)
