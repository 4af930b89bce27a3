"""HuggingFace connector: hf-inference for calls, the Hub API for discovery and
the key check, both faked by one local server."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from apps.providers.connectors.base import InvokeRequest
from apps.providers.connectors.huggingface import HuggingFaceConnector
from apps.providers.errors import ProviderError
from apps.providers.models import ProviderConfig
from apps.providers.resilience import call_provider
from apps.providers.services import provider_models, provider_test

KEY = "hf_test_0123456789abcdef"
MODEL = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"

pytestmark = pytest.mark.usefixtures("alpha")


@pytest.fixture
def provider(httpserver, make_provider) -> ProviderConfig:
    return make_provider(
        kind="huggingface",
        base_url=httpserver.url_for("/hf-inference"),
        api_key=KEY,
        default_model=MODEL,
        settings={
            "hub_url": httpserver.url_for("/").rstrip("/"),
            "task": "text-classification",
            "author": "distilbert",
            "pipeline_tag": "text-classification",
        },
    )


def test_invoke_posts_inputs_and_parameters_to_the_model_route(
    httpserver, provider, usage_today
):
    answer = [
        [{"label": "POSITIVE", "score": 0.9998}, {"label": "NEGATIVE", "score": 0.0002}]
    ]
    httpserver.expect_request(
        f"/hf-inference/models/{MODEL}", method="POST"
    ).respond_with_json(answer)

    result = call_provider(
        provider,
        lambda c: c.invoke(
            InvokeRequest(inputs="I love this.", parameters={"top_k": 2})
        ),
    )

    assert result.output == answer
    assert result.raw == {"body": answer}
    assert (result.model, result.tokens_in, result.tokens_out) == (MODEL, 0, 0)
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.get_data()) == {
        "inputs": "I love this.",
        "parameters": {"top_k": 2},
    }
    assert usage_today(provider) == {
        "requests": 1,
        "errors": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }


def test_invoke_with_messages_sends_the_last_user_turn_and_unwraps_text(
    httpserver, provider
):
    httpserver.expect_request(
        "/hf-inference/models/openai-community/gpt2", method="POST"
    ).respond_with_json([{"generated_text": "Once upon a time, there was"}])

    result = call_provider(
        provider,
        lambda c: c.invoke(
            InvokeRequest(
                model="openai-community/gpt2",
                messages=[
                    {"role": "system", "content": "You tell stories."},
                    {"role": "user", "content": "Say hi"},
                    {"role": "assistant", "content": "Hi"},
                    {"role": "user", "content": "Once upon a time,"},
                ],
            )
        ),
    )

    assert result.output == "Once upon a time, there was"
    [(request, _)] = httpserver.log
    assert json.loads(request.get_data()) == {
        "inputs": "Once upon a time,",
        "parameters": {},
    }


def test_invoke_refuses_a_model_that_is_not_a_repo_id(httpserver, provider):
    with pytest.raises(ProviderError, match="is not a repo id") as caught:
        call_provider(
            provider,
            lambda c: c.invoke(InvokeRequest(model="../api/whoami-v2", inputs="x")),
        )

    assert caught.value.code == "bad_request"
    assert httpserver.log == []


def test_model_loading_503_is_unavailable_with_the_estimated_time(
    httpserver, provider, usage_today
):
    httpserver.expect_request(f"/hf-inference/models/{MODEL}").respond_with_json(
        {"error": f"Model {MODEL} is currently loading", "estimated_time": 20.0},
        status=503,
    )

    with pytest.raises(ProviderError, match="is currently loading") as caught:
        call_provider(provider, lambda c: c.invoke(InvokeRequest(inputs="x")))

    assert (caught.value.code, caught.value.retry_after) == ("unavailable", 20.0)
    # 20 s is beyond PROVIDER_BACKOFF_MAX: not slept on, not retried.
    assert len(httpserver.log) == 1
    assert usage_today(provider)["errors"] == 1


def test_models_search_the_hub_with_the_configured_filters(
    httpserver, provider, usage_today
):
    httpserver.expect_request(
        "/api/models",
        method="GET",
        query_string={
            "author": "distilbert",
            "pipeline_tag": "text-classification",
            "limit": "100",
        },
    ).respond_with_json(
        [
            {
                "_id": "621ffdc036468d709f174338",
                "id": MODEL,
                "likes": 812,
                "downloads": 3051931,
                "pipeline_tag": "text-classification",
                "library_name": "transformers",
                "tags": ["transformers", "pytorch", "text-classification"],
                "createdAt": "2022-03-02T23:29:04.000Z",
                "private": False,
            },
            {
                "_id": "621ffdc136468d709f17a1b2",
                "id": "distilbert/distilbert-base-uncased",
                "pipeline_tag": "fill-mask",
                "createdAt": "2022-03-02T23:29:04.000Z",
            },
        ]
    )

    models = provider_models(provider=provider)

    assert [(m.id, m.owned_by, m.capabilities, m.created) for m in models] == [
        (MODEL, "distilbert", ("classification",), 1646263744),
        (
            "distilbert/distilbert-base-uncased",
            "distilbert",
            ("fill-mask",),
            1646263744,
        ),
    ]
    assert models[0].raw["downloads"] == 3051931
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert usage_today(provider)["requests"] == 1


def test_models_answer_that_is_not_a_list_is_provider_error(httpserver, provider):
    httpserver.expect_request("/api/models").respond_with_json({"models": []})

    with pytest.raises(ProviderError, match="malformed response") as caught:
        provider_models(provider=provider)

    assert caught.value.code == "provider_error"


def test_health_check_calls_whoami_with_the_key(httpserver, provider):
    httpserver.expect_request(
        "/api/whoami-v2",
        method="GET",
        headers={"Authorization": f"Bearer {KEY}"},
    ).respond_with_json(
        {"type": "user", "name": "ada", "auth": {"type": "access_token"}}
    )

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == ("ok", "")
    assert len(httpserver.log) == 1


def test_health_check_maps_401_to_auth(httpserver, provider):
    httpserver.expect_request("/api/whoami-v2").respond_with_json(
        {"error": "Invalid credentials in Authorization header"}, status=401
    )

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == (
        "error",
        "auth",
    )
    assert "Invalid credentials in Authorization header" in tested.last_health_error


def test_validate_config_requires_a_repo_id_and_warns_without_task():
    missing = HuggingFaceConnector.validate_config(
        {"kind": "huggingface", "api_key": KEY}
    )
    malformed = HuggingFaceConnector.validate_config(
        {"kind": "huggingface", "api_key": KEY, "default_model": "no-owner"}
    )
    good = HuggingFaceConnector.validate_config(
        {
            "kind": "huggingface",
            "api_key": KEY,
            "default_model": MODEL,
            "settings": {"task": "text-classification"},
        }
    )

    assert missing.errors == {
        "default_model": ["HuggingFace needs a model repo id (owner/name)."]
    }
    assert malformed.errors == {
        "default_model": ["'no-owner' is not a repo id of the form owner/name."]
    }
    assert malformed.warnings == [
        "No task set (settings.task, e.g. text-classification): "
        "outputs cannot be checked against the model's pipeline."
    ]
    assert (good.ok, good.warnings) == (True, [])
