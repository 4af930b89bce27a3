"""/api/v1/models/transform/...: the deterministic and LLM engines end to end (the LLM
is a local server speaking OpenAI's wire format), recording, review, stats, quality,
enhancement, roles, tenant isolation and robustness."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models import Avg
from django_tenants.utils import schema_context
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.audit.models import AuditEvent
from apps.providers.models import ProviderConfig, ProviderUsage
from apps.providers.services import provider_create
from apps.registry.models import ModelVersion, RegisteredModel, Transformation
from apps.registry.services import model_create, version_create
from apps.registry.transform.quality import quality_of
from tests.providers.helpers import closed_port
from tests.registry import transform_helpers as s

URL = "/api/v1/models/transform/"
KEY = "sk-test-transform-0123456789"
CHAT = "/v1/chat/completions"


# --- fixtures: a fake OpenAI server on 127.0.0.1 (the SSRF allow-list's only host) ---


@pytest.fixture(scope="module")
def llm_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def llm(llm_server: HTTPServer) -> Iterator[HTTPServer]:
    llm_server.clear()
    yield llm_server
    llm_server.clear()


def answer_with(server: HTTPServer, content: str) -> None:
    server.expect_request(CHAT, method="POST").respond_with_json(s.completion(content))


def sent_bodies(server: HTTPServer) -> list[dict[str, Any]]:
    return [json.loads(request.get_data()) for request, _ in server.log]


@pytest.fixture
def editor(tenant_a, make_user):
    return make_user(tenant_a, "editor")


@pytest.fixture
def client(tenant_a, editor, api_client):
    return api_client(tenant_a, user=editor)


def make_provider(tenant, base_url: str, **fields: Any) -> ProviderConfig:
    fields.setdefault("kind", "openai")
    fields.setdefault("name", f"llm-{os.urandom(3).hex()}")
    with schema_context(tenant.schema_name):
        return provider_create(
            actor="test",
            base_url=base_url,
            api_key=KEY,
            default_model="gpt-4o-mini",
            **fields,
        )


@pytest.fixture
def provider(tenant_a, llm) -> ProviderConfig:
    return make_provider(tenant_a, llm.url_for("/v1"))


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run `fn` in tenant alpha on another thread: its own connection, committed."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with schema_context("alpha"):
                box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def committed_provider(
    django_db_setup, django_db_blocker, llm
) -> Iterator[ProviderConfig]:
    """A provider committed outside the test's transaction, for batch calls made on
    worker threads (their connections cannot see uncommitted rows). List it FIRST in
    the test's arguments: it is removed after the test's transaction is rolled back."""
    name = f"llm-committed-{os.urandom(3).hex()}"
    with django_db_blocker.unblock():
        provider = in_thread(
            lambda: ProviderConfig.objects.create(
                name=name,
                kind="openai",
                base_url=llm.url_for("/v1"),
                api_key=KEY,
                default_model="gpt-4o-mini",
            )
        )
    yield provider

    def remove() -> bool:
        with connection.cursor() as cursor:
            # Fail rather than hang if the test's transaction still holds the row.
            cursor.execute("SET lock_timeout = '10s'")
        ProviderConfig.objects.filter(pk=provider.pk).delete()
        return ProviderConfig.objects.filter(pk=provider.pk).exists()

    with django_db_blocker.unblock():
        assert in_thread(remove) is False


def rows(tenant) -> list[Transformation]:
    with schema_context(tenant.schema_name):
        return list(Transformation.objects.order_by("id"))


FRAUD_METADATA = {
    "model_info": {
        "name": "fraud-scorer",
        "task": "classification",
        "architecture": "tree_ensemble",
        "modalities": ["tabular"],
    },
    "input_schema": [
        {"name": "amount", "type": "number"},
        {"name": "country", "type": "categorical"},
    ],
    "performance": {"auc": 0.934},
}
FRAUD_CONFIDENCE = {
    "model_info.name": 0.95,
    "model_info.task": 0.7,
    "model_info.architecture": 0.8,
    "model_info.modalities": 0.8,
    "input_schema": 0.85,
    "performance.auc": 0.95,
}


# --- the LLM engine --------------------------------------------------------------------


def test_llm_reads_an_unknown_format_with_structured_output(
    tenant_a, client, llm, provider
):
    answer_with(llm, s.structured(FRAUD_METADATA, FRAUD_CONFIDENCE))

    response = client.post(
        URL, {"payload": s.UNKNOWN_FORMAT, "provider_id": provider.pk}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["format"], body["engine"], body["status"]) == (
        "unknown",
        "llm",
        "auto_accepted",
    )
    assert body["metadata"] == {
        **FRAUD_METADATA,
        "input_schema": [
            {"name": "amount", "type": "number", "required": True},
            {"name": "country", "type": "categorical", "required": True},
        ],
    }
    assert body["field_confidence"] == FRAUD_CONFIDENCE
    # (0.95 + 3*0.7 + 2*0.8 + 0.8 + 3*0.85 + 0.95) / (1+3+2+1+3+1)
    assert body["overall_confidence"] == 0.814
    assert body["needs_review"] is False

    (sent,) = sent_bodies(llm)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "canonical_metadata"
    assert sent["response_format"]["json_schema"]["strict"] is False
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["metadata", "confidence"]
    assert "tree_ensemble" in json.dumps(schema["properties"]["metadata"])
    assert sent["messages"][0]["role"] == "system"
    assert '"modelName": "fraud-scorer"' in sent["messages"][1]["content"]

    (row,) = rows(tenant_a)
    assert (row.engine, row.provider_id, row.detected_format) == (
        "llm",
        provider.pk,
        "unknown",
    )
    assert row.result == body["metadata"] and row.input == s.UNKNOWN_FORMAT
    with schema_context("alpha"):
        usage = ProviderUsage.objects.get(provider=provider)
    assert (usage.requests, usage.tokens_in, usage.tokens_out) == (1, 812, 120)


def test_llm_second_opinion_boosts_agreement_and_flags_disagreement(
    tenant_a, client, llm, provider
):
    answer_with(
        llm,
        s.structured(
            {
                "model_info": {
                    "task": "text-generation",
                    "context_window": 2048,
                    "name": "gpt2",
                }
            },
            {
                "model_info.task": 0.8,
                "model_info.context_window": 0.6,
                "model_info.name": 0.9,
            },
        ),
    )

    response = client.post(
        URL,
        {"payload": s.GPT2_CONFIG, "engine": "llm", "provider_id": provider.pk},
        format="json",
    )

    body = response.json()
    assert (body["format"], body["engine"]) == ("huggingface_config", "llm")
    assert body["metadata"]["model_info"]["context_window"] == 1024
    assert body["metadata"]["model_info"]["name"] == "gpt2"
    conf = body["field_confidence"]
    assert conf["model_info.task"] == 0.96  # 0.8 * 1.2, above the rules' 0.85
    assert conf["model_info.context_window"] == 0.45  # rules' 0.9 * 0.5
    assert conf["model_info.name"] == 0.9
    assert conf["model_info.architecture"] == 0.95  # rules only
    assert (
        "model_info.context_window: the LLM says 2048, the rules say 1024; kept "
        "1024 at lower confidence — please check." in body["warnings"]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "Sorry, I cannot help with that.",
            "The LLM's answer was not JSON; nothing was taken from it.",
        ),
        (
            '{"answer": 42}',
            "The LLM's answer did not have the expected shape "
            '({"metadata": ..., "confidence": ...}); nothing was taken from it.',
        ),
    ],
)
def test_garbage_llm_answer_is_200_with_zero_confidence_and_a_message(
    tenant_a, client, llm, provider, content, message
):
    answer_with(llm, content)

    response = client.post(
        URL, {"payload": s.UNKNOWN_FORMAT, "provider_id": provider.pk}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["overall_confidence"] == 0
    assert body["metadata"] == {} and body["field_confidence"] == {}
    assert (body["message"], body["needs_review"], body["status"]) == (
        message,
        True,
        "pending_review",
    )
    assert rows(tenant_a)[0].message == message


def test_invalid_llm_fields_are_dropped_with_zero_confidence(
    tenant_a, client, llm, provider
):
    answer_with(
        llm,
        s.structured(
            {"model_info": {"task": "divination", "name": "x"}, "license": "mit"},
            {"model_info.task": 0.9, "model_info.name": 0.9, "license": 0.9},
        ),
    )

    body = client.post(
        URL, {"payload": "a model named x", "provider_id": provider.pk}, format="json"
    ).json()

    assert body["metadata"] == {"model_info": {"name": "x"}, "license": "mit"}
    assert body["field_confidence"] == {
        "model_info.name": 0.9,
        "license": 0.9,
        "model_info.task": 0.0,
    }
    # (0.9 + 1.5*0.9 + 3*0) / 5.5
    assert body["overall_confidence"] == 0.409
    assert body["syntax"] == "text"
    assert any("model_info.task: dropped" in w for w in body["warnings"])


def test_provider_down_is_the_503_envelope_and_nothing_is_recorded(tenant_a, client):
    down = make_provider(tenant_a, f"http://127.0.0.1:{closed_port()}/v1")

    response = client.post(
        URL,
        {"payload": s.UNKNOWN_FORMAT, "engine": "llm", "provider_id": down.pk},
        format="json",
    )

    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "unavailable",
        "message": "The provider could not be reached or is failing. "
        "(connection failed)",
    }
    assert rows(tenant_a) == []


def test_llm_engine_needs_a_provider_that_speaks_json(tenant_a, client):
    missing = client.post(URL, {"payload": {}, "engine": "llm"}, format="json")
    hf = make_provider(tenant_a, "http://127.0.0.1:9", kind="huggingface")
    wrong = client.post(URL, {"payload": {}, "provider_id": hf.pk}, format="json")
    unknown = client.post(URL, {"payload": {}, "provider_id": 999999}, format="json")

    assert missing.status_code == wrong.status_code == unknown.status_code == 400
    assert missing.json()["error"]["fields"] == {
        "provider_id": ["Required with engine 'llm'."]
    }
    assert wrong.json()["error"]["fields"] == {
        "provider_id": ["Choose a provider of kind openai, anthropic, google."]
    }
    assert "provider_id" in unknown.json()["error"]["fields"]


# --- the deterministic engine, recording and stats -----------------------------------


def test_known_format_is_mapped_by_rules_and_recorded(tenant_a, client, editor):
    response = client.post(URL, {"payload": s.MLMODEL}, format="json")

    body = response.json()
    assert (body["format"], body["engine"], body["syntax"]) == (
        "mlflow_mlmodel",
        "deterministic",
        "yaml",
    )
    assert body["field_confidence"]["input_schema"] == 0.95
    (row,) = rows(tenant_a)
    assert row.input == s.MLMODEL
    assert row.field_confidence == body["field_confidence"]
    assert row.overall_confidence == body["overall_confidence"]
    assert row.created_by == str(editor)


def test_stats_come_from_the_recorded_rows(tenant_a, client):
    payloads = [s.LLAMA2_CONFIG, s.OPENAI_MODEL, s.UNKNOWN_FORMAT, s.MLMODEL]
    results = [client.post(URL, {"payload": p}, format="json").json() for p in payloads]

    stats = client.get(f"{URL}stats/").json()

    with schema_context("alpha"):
        average = Transformation.objects.aggregate(a=Avg("overall_confidence"))["a"]
    reviewed = sum(r["needs_review"] for r in results)
    assert stats == {
        "count": 4,
        "by_format": {
            "huggingface_config": 1,
            "mlflow_mlmodel": 1,
            "openai_model": 1,
            "unknown": 1,
        },
        "by_engine": {"deterministic": 4},
        "by_status": {
            "auto_accepted": 4 - reviewed,
            "pending_review": reviewed,
        },
        "average_confidence": round(average, 3),
        "review_rate": round(reviewed / 4, 3),
        "pending_review": reviewed,
    }
    assert results[2]["needs_review"] is True  # unknown: nothing mapped
    assert results[0]["needs_review"] is False


def test_capabilities_list_formats_and_the_llm_only_with_a_json_provider(
    tenant_a, client
):
    before = client.get(f"{URL}capabilities/").json()
    make_provider(tenant_a, "http://127.0.0.1:9", kind="huggingface")
    make_provider(tenant_a, "http://127.0.0.1:9/v1", name="off", enabled=False)
    still = client.get(f"{URL}capabilities/").json()
    on = make_provider(tenant_a, "http://127.0.0.1:9/v1", name="gpt")
    after = client.get(f"{URL}capabilities/").json()

    assert [f["name"] for f in before["formats"]] == [
        "huggingface_config",
        "huggingface_model_card",
        "openai_model",
        "anthropic_model",
        "google_model",
        "mlflow_mlmodel",
        "oip_model_metadata",
        "canonical",
    ]
    assert [(e["name"], e["available"]) for e in before["engines"]] == [
        ("deterministic", True),
        ("llm", False),
    ]
    assert still["engines"][1]["available"] is False
    assert after["engines"][1]["available"] is True
    assert after["llm_providers"] == [{"id": on.pk, "name": "gpt", "kind": "openai"}]
    assert after["review_threshold"] == 0.7


def test_review_threshold_comes_from_settings(tenant_a, client, settings):
    settings.TRANSFORM_REVIEW_THRESHOLD = 0.95

    body = client.post(URL, {"payload": s.LLAMA2_CONFIG}, format="json").json()

    assert body["overall_confidence"] < 0.95
    assert (body["needs_review"], body["status"]) == (True, "pending_review")


def test_weak_rules_result_gets_an_llm_second_opinion_that_may_be_ignored(
    tenant_a, client, llm, provider, settings
):
    settings.TRANSFORM_REVIEW_THRESHOLD = 0.95
    answer_with(llm, "not json at all")

    body = client.post(
        URL, {"payload": s.LLAMA2_CONFIG, "provider_id": provider.pk}, format="json"
    ).json()

    assert len(llm.log) == 1  # auto asked the LLM: the rules scored below 0.95
    assert body["engine"] == "deterministic"
    assert body["metadata"]["model_info"]["task"] == "text-generation"
    assert body["warnings"][-1] == (
        "The LLM second opinion was not used: The LLM's answer was not JSON; "
        "nothing was taken from it."
    )


def test_oversized_payload_is_413_naming_the_field(tenant_a, client, settings):
    settings.TRANSFORM_MAX_INPUT_BYTES = 1000

    response = client.post(URL, {"payload": "x" * 2000}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["fields"] == {"payload": ["At most 1000 bytes."]}


def test_stored_input_is_capped(tenant_a, client, settings):
    settings.TRANSFORM_STORED_INPUT_BYTES = 100
    text = json.dumps(s.LLAMA2_CONFIG)

    client.post(URL, {"payload": text}, format="json")

    (row,) = rows(tenant_a)
    assert row.input_truncated is True
    assert row.input == {"preview": text[:100]}


def test_list_filters_by_status(tenant_a, client):
    client.post(URL, {"payload": s.UNKNOWN_FORMAT}, format="json")
    client.post(URL, {"payload": s.ANTHROPIC_MODEL}, format="json")

    pending = client.get(URL, {"status": "pending_review"}).json()
    everything = client.get(URL).json()

    assert [r["detected_format"] for r in pending["results"]] == ["unknown"]
    assert everything["count"] == 2
    assert client.get(URL, {"status": "bogus"}).status_code == 400


# --- review: accept and reject ---------------------------------------------------------


@pytest.fixture
def version(tenant_a) -> ModelVersion:
    with schema_context("alpha"):
        model = model_create(name="iris", actor="test")
        return version_create(
            model=model,
            source="upload",
            actor="test",
            metadata={"model_info": {"name": "iris"}, "license": "mit"},
        )


def test_confident_result_is_applied_to_the_target_version(tenant_a, client, version):
    body = client.post(
        URL, {"payload": s.OIP_METADATA, "version_id": version.pk}, format="json"
    ).json()

    assert (body["status"], body["target_version_id"]) == (
        "auto_accepted",
        version.pk,
    )
    with schema_context("alpha"):
        version.refresh_from_db()
    assert version.metadata["license"] == "mit"  # kept: merged, not replaced
    assert version.metadata["model_info"]["name"] == "iris-classifier"
    assert version.input_schema == body["metadata"]["input_schema"]
    again = client.post(f"{URL}{body['transformation_id']}/accept/", {}, format="json")
    assert again.status_code == 409


def test_pending_result_accepted_with_edits_onto_a_version(tenant_a, client, version):
    pending = client.post(URL, {"payload": s.UNKNOWN_FORMAT}, format="json").json()
    edited = {"model_info": {"task": "classification"}, "performance": {"auc": 0.9}}

    response = client.post(
        f"{URL}{pending['transformation_id']}/accept/",
        {"metadata": edited, "version_id": version.pk},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version_id"] == version.pk
    assert body["transformation"]["status"] == "accepted"
    assert body["transformation"]["accepted_metadata"] == edited
    with schema_context("alpha"):
        version.refresh_from_db()
        audit = AuditEvent.objects.filter(action="transformation.accept").get()
    assert version.metadata["model_info"] == {"name": "iris", "task": "classification"}
    assert version.metrics == {"auc": 0.9}
    assert audit.after == {"version": version.pk, "edited": True}


def test_accepting_a_provider_model_registers_it_under_the_known_provider(
    tenant_a, client
):
    openai = make_provider(tenant_a, "http://127.0.0.1:9/v1", name="openai-main")
    result = client.post(URL, {"payload": s.OPENAI_MODEL}, format="json").json()

    response = client.post(
        f"{URL}{result['transformation_id']}/accept/",
        {"model_name": "GPT-4o mini"},
        format="json",
    )

    body = response.json()
    with schema_context("alpha"):
        version = ModelVersion.objects.select_related("model").get(
            pk=body["version_id"]
        )
    assert (version.source, version.provider_id, version.external_id) == (
        "provider",
        openai.pk,
        "gpt-4o-mini",
    )
    assert version.model.name == "GPT-4o mini"
    assert version.metadata["model_info"]["task"] == "chat"
    assert body["detail"] == f"Applied to version {version.pk}."


def test_accepting_without_version_or_provider_keeps_the_metadata(tenant_a, client):
    result = client.post(URL, {"payload": s.MLMODEL}, format="json").json()

    body = client.post(
        f"{URL}{result['transformation_id']}/accept/", {}, format="json"
    ).json()

    assert body["version_id"] is None
    assert body["metadata"] == result["metadata"]
    assert body["transformation"]["status"] == "accepted"
    with schema_context("alpha"):
        assert RegisteredModel.objects.count() == 0


def test_accepting_invalid_edits_is_400_and_changes_nothing(tenant_a, client):
    result = client.post(URL, {"payload": s.UNKNOWN_FORMAT}, format="json").json()
    url = f"{URL}{result['transformation_id']}/accept/"

    bad = client.post(
        url, {"metadata": {"model_info": {"context_window": -1}}}, format="json"
    )
    not_object = client.post(url, {"metadata": [1, 2]}, format="json")

    assert bad.status_code == not_object.status_code == 400
    assert "metadata" in bad.json()["error"]["fields"]
    assert rows(tenant_a)[0].status == "pending_review"


def test_reject_then_nothing_more(tenant_a, client):
    result = client.post(URL, {"payload": s.UNKNOWN_FORMAT}, format="json").json()
    pk = result["transformation_id"]

    rejected = client.post(f"{URL}{pk}/reject/", {"reason": "junk"}, format="json")
    again = client.post(f"{URL}{pk}/reject/", {}, format="json")
    accept = client.post(f"{URL}{pk}/accept/", {}, format="json")

    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reviewed_by"]
    assert again.status_code == accept.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    with schema_context("alpha"):
        event = AuditEvent.objects.get(action="transformation.reject")
    assert event.after == {"reason": "junk"}


def test_viewers_read_editors_write_and_only_manage_keys(
    tenant_a, client, make_user, make_key, api_client
):
    pk = client.post(URL, {"payload": s.UNKNOWN_FORMAT}, format="json").json()[
        "transformation_id"
    ]
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    _, predict_key = make_key(tenant_a, scope="predict")
    _, manage_key = make_key(tenant_a, scope="manage")
    predict = api_client(tenant_a, key=predict_key)
    manage = api_client(tenant_a, key=manage_key)

    assert viewer.get(f"{URL}{pk}/").status_code == 200
    assert viewer.get(f"{URL}stats/").status_code == 200
    assert viewer.post(URL, {"payload": {}}, format="json").status_code == 403
    assert viewer.post(f"{URL}{pk}/reject/", {}, format="json").status_code == 403
    assert predict.get(f"{URL}stats/").status_code == 403
    assert manage.post(URL, {"payload": {}}, format="json").status_code == 200
    assert api_client(tenant_a).get(f"{URL}stats/").status_code in (401, 403)


def test_another_tenant_cannot_see_or_touch_a_transformation(
    tenant_a, tenant_b, client, make_user, api_client
):
    pk = client.post(URL, {"payload": s.LLAMA2_CONFIG}, format="json").json()[
        "transformation_id"
    ]
    other = api_client(tenant_b, user=make_user(tenant_b, "admin"))

    assert other.get(f"{URL}{pk}/").status_code == 404
    assert other.get(f"{URL}{pk}/").json()["error"]["code"] == "not_found"
    assert other.post(f"{URL}{pk}/reject/", {}, format="json").status_code == 404
    assert other.get(f"{URL}stats/").json()["count"] == 0
    assert other.get(URL).json()["count"] == 0
    assert rows(tenant_a)[0].status == "auto_accepted"


# --- batch ---------------------------------------------------------------------------


def test_batch_reports_each_item(tenant_a, client, version):
    response = client.post(
        f"{URL}batch/",
        {
            "items": [
                {"payload": s.BERT_CONFIG},
                {"payload": s.GEMINI_MODEL, "version_id": 999999},
                {"payload": s.UNKNOWN_FORMAT},
                {"payload": s.CANONICAL, "version_id": version.pk},
            ]
        },
        format="json",
    )

    body = response.json()
    assert body["summary"] == {"total": 4, "ok": 3, "failed": 1, "needs_review": 1}
    assert [r["ok"] for r in body["results"]] == [True, False, True, True]
    assert body["results"][1]["error"]["code"] == "not_found"
    assert body["results"][0]["result"]["format"] == "huggingface_config"
    assert body["results"][3]["result"]["target_version_id"] == version.pk
    assert len(rows(tenant_a)) == 3


def test_batch_asks_the_llm_at_most_four_at_a_time(
    committed_provider, tenant_a, client, llm
):
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow_answer(request: Request) -> Response:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        content = s.structured(FRAUD_METADATA, FRAUD_CONFIDENCE)
        return Response(
            json.dumps(s.completion(content)), 200, {"Content-Type": "application/json"}
        )

    llm.expect_request(CHAT, method="POST").respond_with_handler(slow_answer)
    items = [{"payload": {**s.UNKNOWN_FORMAT, "n": i}} for i in range(7)]
    items.append({"payload": s.ANTHROPIC_MODEL})  # known and confident: no LLM call

    response = client.post(
        f"{URL}batch/",
        {"items": items, "provider_id": committed_provider.pk},
        format="json",
    )

    body = response.json()
    assert body["summary"] == {"total": 8, "ok": 8, "failed": 0, "needs_review": 0}
    assert [r["result"]["engine"] for r in body["results"]] == ["llm"] * 7 + [
        "deterministic"
    ]
    assert len(llm.log) == 7
    assert 2 <= state["max"] <= 4


def test_batch_provider_failure_is_that_items_error(
    committed_provider, tenant_a, client, llm
):
    llm.expect_request(CHAT, method="POST").respond_with_json(
        {"error": {"message": "overloaded"}}, status=503
    )

    body = client.post(
        f"{URL}batch/",
        {
            "items": [{"payload": s.UNKNOWN_FORMAT}, {"payload": s.LLAMA2_CONFIG}],
            "provider_id": committed_provider.pk,
        },
        format="json",
    ).json()

    assert body["summary"]["failed"] == 1
    assert body["results"][0]["error"]["code"] == "unavailable"
    assert body["results"][1]["result"]["engine"] == "deterministic"


def test_batch_validation_names_the_field(tenant_a, client):
    empty = client.post(f"{URL}batch/", {"items": []}, format="json")
    too_many = client.post(
        f"{URL}batch/", {"items": [{"payload": {}}] * 101}, format="json"
    )

    assert empty.status_code == too_many.status_code == 400
    assert empty.json()["error"]["fields"] == {
        "items": ["Ensure this field has at least 1 elements."]
    }
    assert too_many.json()["error"]["fields"] == {
        "items": ["Ensure this field has no more than 100 elements."]
    }


# --- quality and enhancement ---------------------------------------------------------


@pytest.fixture
def claude_version(tenant_a) -> ModelVersion:
    with schema_context("alpha"):
        model = model_create(name="claude", actor="test")
        metadata = {
            "model_info": {
                k: v
                for k, v in {
                    "name": "Claude Sonnet 4",
                    "task": "chat",
                    "architecture": "transformer",
                    "modalities": ["text", "image"],
                    "capabilities": ["chat"],
                    "context_window": 200000,
                }.items()
            }
        }
        return version_create(
            model=model, source="upload", actor="test", metadata=metadata
        )


def test_quality_scores_the_version(tenant_a, client, claude_version):
    response = client.get(f"/api/v1/models/versions/{claude_version.pk}/quality/")

    body = response.json()
    expected = quality_of(claude_version.metadata)
    assert body["score"] == expected["score"]
    assert body["missing"] == [
        "description",
        "license",
        "performance",
        "training",
        "model_info.max_output_tokens",
        "model_info.parameter_count",
    ]
    assert body["version_id"] == claude_version.pk
    assert client.get("/api/v1/models/versions/999999/quality/").status_code == 404


def test_enhance_proposes_missing_fields_and_applies_only_accepted_ones(
    tenant_a, client, llm, provider, claude_version
):
    answer_with(
        llm,
        s.structured(
            {
                "license": "proprietary",
                "model_info": {"max_output_tokens": 64000, "task": "completion"},
                "description": "Anthropic's balanced model.",
            },
            {
                "license": 0.9,
                "model_info.max_output_tokens": 0.8,
                "model_info.task": 0.9,
                "description": 0.7,
            },
        ),
    )
    url = f"/api/v1/models/versions/{claude_version.pk}/enhance/"

    proposals = client.post(url, {"provider_id": provider.pk}, format="json").json()

    assert proposals["ok"] is True
    assert {
        p["field"]: (p["value"], p["confidence"]) for p in proposals["proposals"]
    } == {
        "license": ("proprietary", 0.9),
        "model_info.max_output_tokens": (64000, 0.8),
        "description": ("Anthropic's balanced model.", 0.7),
    }
    assert any("model_info.task" in w for w in proposals["warnings"])
    with schema_context("alpha"):
        claude_version.refresh_from_db()
    assert "license" not in claude_version.metadata  # nothing applied yet

    applied = client.post(
        f"{url}apply/",
        {"fields": {"license": "proprietary", "model_info.max_output_tokens": 64000}},
        format="json",
    )

    assert applied.status_code == 200
    metadata = applied.json()["metadata"]
    assert metadata["license"] == "proprietary"
    assert metadata["model_info"]["max_output_tokens"] == 64000
    assert metadata["model_info"]["context_window"] == 200000
    assert "description" not in metadata


def test_enhance_apply_refuses_unknown_fields_and_bad_values(
    tenant_a, client, claude_version
):
    url = f"/api/v1/models/versions/{claude_version.pk}/enhance/apply/"

    unknown = client.post(url, {"fields": {"model_info.colour": "red"}}, format="json")
    bad = client.post(url, {"fields": {"model_info.context_window": -5}}, format="json")

    assert unknown.status_code == bad.status_code == 400
    assert unknown.json()["error"]["fields"] == {
        "fields.model_info.colour": ["Not a canonical field path."]
    }
    assert "context_window" in json.dumps(bad.json()["error"]["fields"])


def test_enhance_with_a_garbage_answer_proposes_nothing(
    tenant_a, client, llm, provider, claude_version
):
    answer_with(llm, "no idea")

    body = client.post(
        f"/api/v1/models/versions/{claude_version.pk}/enhance/",
        {"provider_id": provider.pk},
        format="json",
    ).json()

    assert (body["ok"], body["proposals"]) == (False, [])
    assert (
        body["message"] == "The LLM's answer was not JSON; nothing was taken from it."
    )


# --- robustness ----------------------------------------------------------------------


def test_no_input_json_makes_a_500(tenant_a, client):
    rng = random.Random(424242)
    statuses = []
    for _ in range(50):
        payload = s.random_json(rng)
        response = client.post(URL, {"payload": payload}, format="json")
        statuses.append(response.status_code)
        assert response.status_code in (200, 400), response.content
        if response.status_code == 400:
            assert response.json()["error"]["fields"] == {
                "payload": ["This field may not be null."]
            }
    for _ in range(10):
        raw = json.dumps(s.random_json(rng))
        response = client.post(URL, raw, content_type="application/json")
        assert response.status_code in (200, 400), response.content
    assert statuses.count(200) >= 40


def test_text_with_nul_and_lone_surrogates_is_stored_safely(tenant_a, client):
    payload = {"model_type": "llama\x00", "architectures": ["X\ud800ForCausalLM"]}

    response = client.post(
        URL, json.dumps({"payload": payload}), content_type="application/json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["warnings"][0] == (
        "model_info.architecture_detail: dropped (Surrogate characters are not "
        "allowed: U+D800.)"
    )
    (row,) = rows(tenant_a)
    assert row.input["model_type"] == "llama\ufffd"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('{"output_schema": {"labels": ["\\ud800"]}}', "U+D800"),
        ('{"feature_importance": {"a\\u0000": 0.5}}', "Null characters"),
        ('{"output_schema": {"labels": [1e400]}}', "finite"),
    ],
)
def test_accepting_metadata_postgres_cannot_store_is_400_naming_it(
    tenant_a, client, version, edit, message
):
    # Edited metadata is the client's own: refused, not replaced like a payload's
    # NUL (and was a 400 naming "query", a database error, for a NUL or surrogate).
    pending = client.post(URL, {"payload": s.UNKNOWN_FORMAT}, format="json").json()
    url = f"{URL}{pending['transformation_id']}/accept/"
    before = version.metadata

    response = client.generic(
        "POST",
        url,
        f'{{"metadata": {edit}, "version_id": {version.pk}}}',
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    fields = response.json()["error"]["fields"]
    # named by its path inside the metadata (metadata.output_schema.labels.0)
    [(name, messages)] = fields.items()
    assert name.startswith("metadata.") and message in messages[0]
    with schema_context("alpha"):
        row = Transformation.objects.get(pk=pending["transformation_id"])
        version.refresh_from_db()
    assert row.status == "pending_review" and row.accepted_metadata is None
    assert version.metadata == before


@pytest.mark.parametrize(
    ("value", "message"),
    [('"\\ud800"', "U+D800"), ('"a\\u0000"', "Null characters"), ("1e400", "finite")],
)
def test_enhance_apply_value_postgres_cannot_store_is_400(
    tenant_a, client, claude_version, value, message
):
    url = f"/api/v1/models/versions/{claude_version.pk}/enhance/apply/"
    with schema_context("alpha"):
        before = ModelVersion.objects.get(pk=claude_version.pk).metadata

    response = client.generic(
        "POST",
        url,
        f'{{"fields": {{"description": {value}}}}}',
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["fields.description"]
    assert message in fields["fields.description"][0]
    with schema_context("alpha"):
        assert ModelVersion.objects.get(pk=claude_version.pk).metadata == before
