"""Custom HTTP connector: a JSON endpoint described by a template and a path."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from apps.providers.connectors.base import InvokeRequest
from apps.providers.connectors.custom_http import CustomHTTPConnector
from apps.providers.errors import ProviderError
from apps.providers.resilience import call_provider
from apps.providers.services import provider_models, provider_test

KEY = "ck-test-0123456789"

pytestmark = pytest.mark.usefixtures("alpha")


def invoke(provider, **request):  # type: ignore[no-untyped-def]
    return call_provider(provider, lambda c: c.invoke(InvokeRequest(**request)))


def test_invoke_renders_the_template_with_values_and_follows_the_path(
    httpserver, make_provider, usage_today
):
    provider = make_provider(
        kind="custom_http",
        base_url=httpserver.url_for("/score"),
        api_key=KEY,
        default_model="churn-v3",
        settings={
            "request_template": {
                "instances": ["{{inputs}}"],
                "meta": {"model": "{{model}}", "options": "{{parameters}}"},
                "note": "literal {{inputs}} stays text",
            },
            "response_path": "data.0.prediction",
            "auth_header": "X-Api-Key",
            "auth_scheme": "",
            "headers": {"X-Team": "risk"},
        },
    )
    httpserver.expect_request("/score", method="POST").respond_with_json(
        {"data": [{"prediction": 0.82, "label": "churn"}], "took_ms": 3}
    )

    result = invoke(
        provider,
        inputs={"tenure": 3, "plan": "basic"},
        parameters={"threshold": 0.5},
    )

    assert result.output == 0.82
    assert result.model == "churn-v3"
    assert result.raw == {
        "data": [{"prediction": 0.82, "label": "churn"}],
        "took_ms": 3,
    }
    [(request, _)] = httpserver.log
    assert request.headers["X-Api-Key"] == KEY
    assert "Authorization" not in request.headers
    assert request.headers["X-Team"] == "risk"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {
        "instances": [{"tenure": 3, "plan": "basic"}],
        "meta": {"model": "churn-v3", "options": {"threshold": 0.5}},
        "note": "literal {{inputs}} stays text",
    }
    assert usage_today(provider) == {
        "requests": 1,
        "errors": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal("0"),
    }


def test_invoke_defaults_to_inputs_body_bearer_key_and_whole_answer(
    httpserver, make_provider
):
    provider = make_provider(
        kind="custom_http", base_url=httpserver.url_for("/predict"), api_key=KEY
    )
    httpserver.expect_request("/predict", method="POST").respond_with_json([1, 0, 1])

    result = invoke(provider, inputs=[[5.1, 3.5], [6.2, 2.9], [4.9, 3.0]])

    assert result.output == [1, 0, 1]
    assert result.raw == {"body": [1, 0, 1]}
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.get_data()) == {
        "inputs": [[5.1, 3.5], [6.2, 2.9], [4.9, 3.0]]
    }


def test_invoke_without_key_sends_no_auth_header_and_passes_messages(
    httpserver, make_provider
):
    provider = make_provider(
        kind="custom_http",
        base_url=httpserver.url_for("/chat"),
        settings={
            "request_template": {"messages": "{{messages}}"},
            "response_path": "reply",
        },
    )
    httpserver.expect_request("/chat", method="POST").respond_with_json(
        {"reply": "hello"}
    )

    result = invoke(provider, messages=[{"role": "user", "content": "hi"}])

    assert result.output == "hello"
    [(request, _)] = httpserver.log
    assert "Authorization" not in request.headers
    assert json.loads(request.get_data()) == {
        "messages": [{"role": "user", "content": "hi"}]
    }


def test_response_path_miss_is_provider_error_naming_the_path(
    httpserver, make_provider, usage_today
):
    provider = make_provider(
        kind="custom_http",
        base_url=httpserver.url_for("/predict"),
        settings={"response_path": "data.3.prediction"},
    )
    httpserver.expect_request("/predict").respond_with_json(
        {"data": [{"prediction": 1}]}
    )

    with pytest.raises(
        ProviderError, match=re.escape("response path 'data.3.prediction' not found")
    ) as caught:
        invoke(provider, inputs=[1])

    assert caught.value.code == "provider_error"
    assert len(httpserver.log) == 1  # not retryable
    assert usage_today(provider)["errors"] == 1


def test_models_is_the_one_model_the_endpoint_serves(httpserver, make_provider):
    named = make_provider(
        kind="custom_http",
        base_url=httpserver.url_for("/predict"),
        default_model="churn-v3",
    )
    unnamed = make_provider(kind="custom_http", base_url=httpserver.url_for("/predict"))

    assert [m.id for m in provider_models(provider=named)] == ["churn-v3"]
    assert [m.id for m in provider_models(provider=unnamed)] == ["default"]
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("status", "health", "code"),
    [
        (200, "ok", ""),
        (404, "ok", ""),
        (405, "ok", ""),
        (401, "error", "auth"),
        (403, "error", "auth"),
        (502, "error", "unavailable"),
    ],
)
def test_health_check_counts_any_answer_but_auth_and_server_errors(
    httpserver, make_provider, status, health, code
):
    provider = make_provider(
        kind="custom_http",
        base_url=httpserver.url_for("/predict"),
        api_key=KEY,
        settings={"health_url": httpserver.url_for("/healthz")},
    )
    httpserver.expect_request("/healthz", method="GET").respond_with_data(
        "whatever", status=status
    )

    tested = provider_test(provider=provider)

    assert (tested.last_health_status, tested.last_health_error_code) == (health, code)
    [(request, _)] = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {KEY}"


def test_health_check_defaults_to_a_get_of_the_endpoint(httpserver, make_provider):
    provider = make_provider(
        kind="custom_http", base_url=httpserver.url_for("/predict")
    )
    httpserver.expect_request("/predict", method="GET").respond_with_data(
        "Method Not Allowed", status=405
    )

    tested = provider_test(provider=provider)

    assert tested.last_health_status == "ok"
    assert len(httpserver.log) == 1


def test_validate_config_checks_template_path_and_headers():
    report = CustomHTTPConnector.validate_config(
        {
            "kind": "custom_http",
            "base_url": "https://models.example.com/predict",
            "settings": {
                "request_template": {"x": "{{model}}", "when": {1, 2}},
                "response_path": "data..prediction",
                "headers": {"Host": "internal", "content-length": "0", "X-Ok": "1"},
                "auth_header": "Bad Header",
            },
        }
    )

    assert report.errors == {
        "settings.request_template": [
            "Not a JSON value: Object of type set is not JSON serializable."
        ],
        "settings.response_path": [
            "Use a dot path of keys and list indexes, e.g. data.0.prediction."
        ],
        "settings.headers": [
            "'Host' is set by ModelHub itself.",
            "'content-length' is set by ModelHub itself.",
        ],
        "settings.auth_header": ["Not a valid header name."],
    }


def test_validate_config_needs_an_inputs_or_messages_placeholder():
    without = CustomHTTPConnector.validate_config(
        {
            "kind": "custom_http",
            "base_url": "https://models.example.com/predict",
            "settings": {"request_template": {"data": "{{parameters}}"}},
        }
    )
    default = CustomHTTPConnector.validate_config(
        {"kind": "custom_http", "base_url": "https://models.example.com/predict"}
    )

    assert without.errors == {
        "settings.request_template": [
            'The template must contain "{{inputs}}" or "{{messages}}".'
        ]
    }
    assert default.ok


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_an_answer_with_nan_or_infinity_is_a_malformed_response(
    httpserver, make_provider, constant
):
    # What Python's json.dumps writes for float("nan"): not JSON, and no answer
    # holding it could be returned or logged.
    provider = make_provider(
        kind="custom_http",
        base_url=httpserver.url_for("/score"),
        api_key=KEY,
        settings={"request_template": {"x": "{{inputs}}"}, "response_path": "score"},
    )
    httpserver.expect_request("/score", method="POST").respond_with_data(
        '{"score": ' + constant + "}", content_type="application/json"
    )

    with pytest.raises(ProviderError, match="malformed response") as caught:
        invoke(provider, inputs={"a": 1})

    assert caught.value.code == "provider_error"


def test_calls_share_a_client_but_no_cookie_an_answer_sets(httpserver, make_provider):
    """The client is kept between calls (its connections reused), and it may serve
    another tenant with the same settings next: a cookie an answer sets is not sent
    back."""
    from werkzeug import Response

    provider = make_provider(
        kind="custom_http", base_url=httpserver.url_for("/cookie"), api_key=KEY
    )
    httpserver.expect_request("/cookie", method="POST").respond_with_response(
        Response(
            "[1]",
            content_type="application/json",
            headers={"Set-Cookie": "session=tenant-a; Path=/"},
        )
    )

    invoke(provider, inputs=[[1.0]])
    invoke(provider, inputs=[[1.0]])

    assert [r.headers.get("Cookie") for r, _ in httpserver.log] == [None, None]
