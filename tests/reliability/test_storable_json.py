"""JSON values PostgreSQL cannot store: a number Python's json reads as infinity
(`1e400`), the NUL character and lone UTF-16 surrogates (`\\ud800`), in a value or a
key. Each is a 400 naming the field and the path inside it (never the meaningless
`query` of a database error, never a 500), and nothing stored changes."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.groups.models import ModelGroup
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Job
from apps.providers.models import ProviderConfig
from apps.registry.models import ModelVersion
from tests.groups.group_helpers import demo_group  # noqa: F401 (fixture)
from tests.jobs.conftest import breast_cancer_csv, upload
from tests.registry.model_helpers import UNUSED_URL, model_in, provider_in

# Raw JSON text: json.dumps cannot write these.
HOSTILE = {
    "infinity": ("1e400", "Numbers must be finite (no infinity or NaN)."),
    "nul": ('"a\\u0000b"', "Null characters are not allowed."),
    "nul key": ('{"a\\u0000": 1}', "Null characters are not allowed."),
    "surrogate": ('"a\\ud800"', "Surrogate characters are not allowed: U+D800."),
    "surrogate key": (
        '{"\\udfff": 1}',
        "Surrogate characters are not allowed: U+DFFF.",
    ),
}
CASES = pytest.mark.parametrize(
    ("raw", "message"), list(HOSTILE.values()), ids=list(HOSTILE)
)


@pytest.fixture
def client(tenant_a, make_key, api_client):  # type: ignore[no-untyped-def]
    _, key = make_key(tenant_a, scope="manage")
    return api_client(tenant_a, key=key)


def send(client, method: str, path: str, body: str):  # type: ignore[no-untyped-def]
    return client.generic(method, path, body, content_type="application/json")


def refused(response, field: str, message: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] in ("invalid", "invalid_config"), error
    assert error["fields"] == {field: [message]}, error


# --- groups: promotion rules --------------------------------------------------------


@CASES
def test_group_promotion_rules_postgres_cannot_store_is_400(
    client, tenant_a, raw, message
):
    with schema_context("alpha"):
        from apps.groups.services import group_create

        group = group_create(
            name="Rules", actor="t", promotion_rules={"min_samples": 100}
        )
    body = f'{{"promotion_rules": {{"min_samples": 100, "x": {raw}}}}}'

    refused(
        send(client, "PATCH", f"/api/v1/groups/{group.slug}/", body),
        "promotion_rules.x",
        message,
    )
    refused(
        send(client, "POST", "/api/v1/groups/", '{"name": "new", ' + body[1:]),
        "promotion_rules.x",
        message,
    )
    with schema_context("alpha"):
        assert ModelGroup.objects.get(pk=group.pk).promotion_rules == {
            "min_samples": 100
        }
        assert ModelGroup.objects.count() == 1


# --- providers: settings ------------------------------------------------------------


@CASES
def test_provider_settings_postgres_cannot_store_is_400(client, tenant_a, raw, message):
    provider = provider_in(tenant_a, name="oai", base_url=UNUSED_URL)
    with schema_context("alpha"):
        before = ProviderConfig.objects.get(pk=provider.pk).settings
    body = f'{{"settings": {{"x": {raw}}}}}'

    refused(
        send(client, "PATCH", f"/api/v1/providers/{provider.pk}/", body),
        "settings.x",
        message,
    )
    validated = send(
        client,
        "POST",
        "/api/v1/providers/validate/",
        f'{{"name": "p", "kind": "openai", "settings": {{"x": {raw}}}}}',
    )
    assert validated.status_code == 200, validated.content
    assert validated.json()["errors"]["settings"] == [f"x: {message}"]
    with schema_context("alpha"):
        assert ProviderConfig.objects.get(pk=provider.pk).settings == before


# --- registry: lineage and metadata -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ('{"lineage": {"x": 1e400}}', "lineage.x", HOSTILE["infinity"][1]),
        ('{"lineage": {"x": "\\ud800"}}', "lineage.x", HOSTILE["surrogate"][1]),
        ('{"lineage": {"\\ud800": 1}}', "lineage", HOSTILE["surrogate"][1]),
        (
            '{"metadata": {"output_schema": {"labels": ["\\ud800"]}}}',
            "metadata.output_schema.labels.0",
            HOSTILE["surrogate"][1],
        ),
        (
            '{"metadata": {"feature_importance": {"\\ud800": 1}}}',
            "metadata.feature_importance",
            HOSTILE["surrogate"][1],
        ),
        (
            '{"metadata": {"performance": {"accuracy": 1e400}}}',
            "metadata.performance.accuracy",
            HOSTILE["infinity"][1],
        ),
    ],
)
def test_version_json_postgres_cannot_store_is_400(
    client, tenant_a, body, field, message
):
    model = model_in(tenant_a, "Churn")

    response = send(
        client,
        "POST",
        f"/api/v1/models/{model.slug}/versions/",
        '{"source": "upload", ' + body[1:],
    )

    refused(response, field, message)
    with schema_context("alpha"):
        assert not ModelVersion.objects.filter(model=model).exists()


# --- feedback labels ----------------------------------------------------------------


@pytest.fixture
def answered(client, demo_group):  # type: ignore[no-untyped-def]  # noqa: F811
    """(group, request id) of one logged answer, labelled 1."""
    from apps.tenants.demo import demo_rows

    url = f"/api/v1/groups/{demo_group.slug}/"
    answer = client.post(f"{url}predict/", {"inputs": demo_rows(1)[0]}, format="json")
    assert answer.status_code == 200, answer.content
    rid = answer.json()["request_id"]
    labelled = client.post(
        f"{url}feedback/", {"request_id": rid, "label": 1}, format="json"
    )
    assert labelled.json()["updated"] == 1, labelled.content
    return demo_group, rid


def _feedback(group, rid: str):  # type: ignore[no-untyped-def]
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT feedback FROM inference_log_g{group.pk} WHERE request_id = %s",
            [rid],
        )
        value = cursor.fetchone()[0]
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize(
    "raw", ["1e400", '"a\\ud800"', '{"\\ud800": 1}', "[-1e400]"], ids=str
)
def test_feedback_label_postgres_cannot_store_is_400(client, answered, raw):
    group, rid = answered
    message = HOSTILE["infinity" if "e400" in raw else "surrogate"][1]
    inside = ".0" if raw.startswith("[") else ""
    url = f"/api/v1/groups/{group.slug}/feedback/"

    refused(
        send(client, "POST", url, f'{{"request_id": "{rid}", "label": {raw}}}'),
        "label" + inside,
        message,
    )
    refused(
        send(
            client,
            "POST",
            url,
            f'{{"items": [{{"request_id": "{rid}", "label": {raw}}}]}}',
        ),
        "items.0.label" + inside,
        message,
    )
    assert _feedback(group, rid) == {"label": 1}


# --- jobs: hyperparameters ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hyperparameters", "field", "message"),
    [
        ('{"C": 1e400}', "hyperparameters.C", HOSTILE["infinity"][1]),
        ('{"C": "nan"}', "hyperparameters.C", "Must be float."),
        ('{"C": "-inf"}', "hyperparameters.C", "Must be float."),
        ('{"max_iter": "1e400"}', "hyperparameters.max_iter", "Must be int."),
        ('{"max_iter": "inf"}', "hyperparameters.max_iter", "Must be int."),
        ('{"\\ud800": 1}', "hyperparameters", HOSTILE["surrogate"][1]),
    ],
)
def test_job_hyperparameters_not_finite_are_400(
    client, tenant_a, hyperparameters, field, message
):
    with schema_context("alpha"):
        dataset = dataset_create(file=upload(breast_cancer_csv()), name="bc", actor="t")
    body = (
        f'{{"dataset": {dataset.pk}, "target": "target", '
        f'"algorithm": "logistic_regression", "hyperparameters": {hyperparameters}}}'
    )

    refused(send(client, "POST", "/api/v1/jobs/", body), field, message)
    with schema_context("alpha"):
        assert not Job.objects.exists()


# --- the prediction doors: NUL passes (the log stores U+FFFD), the rest is refused ----


def _logged(group) -> int:  # type: ignore[no-untyped-def]
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM inference_log_g{group.pk}")
        return int(cursor.fetchone()[0])


@pytest.mark.parametrize(
    ("extra", "inside", "message"),
    [
        ('"\\ud800": 1', "", HOSTILE["surrogate"][1]),  # was a 500 rendering its name
        ('"x": "\\udc00"', ".x", "Surrogate characters are not allowed: U+DC00."),
        ('"x": 1e400', ".x", HOSTILE["infinity"][1]),
    ],
)
def test_prediction_input_postgres_cannot_store_is_400(
    client,
    demo_group,  # noqa: F811
    extra,
    inside,
    message,
):
    from apps.tenants.demo import demo_rows

    row = json.dumps({"inputs": demo_rows(1)[0]})
    before = _logged(demo_group)

    response = send(
        client,
        "POST",
        f"/api/v1/groups/{demo_group.slug}/predict/",
        row[:-2] + ", " + extra + "}}",
    )

    refused(response, "inputs" + inside, message)
    oip = send(
        client,
        "POST",
        f"/v2/models/{demo_group.slug}/infer",
        '{"inputs": [{"name": "mean_radius", "shape": [1], "datatype": "BYTES", '
        f'"data": [{{{extra}}}]}}]}}',
    )
    refused(oip, "inputs.0.data.0" + inside, message)
    assert _logged(demo_group) == before


@pytest.fixture
def chat_group(tenant_a, httpserver):  # type: ignore[no-untyped-def]
    from tests.groups.conftest import llm_group_create, serve_chat

    serve_chat(httpserver, "/a/v1/chat/completions", "hello")
    with schema_context("alpha"):
        return llm_group_create(
            "chat", [(httpserver.url_for("/a/v1"), "champion", 100)]
        )


@pytest.mark.parametrize(
    ("raw", "message"),
    [('"a\\ud800"', HOSTILE["surrogate"][1]), ("1e400", HOSTILE["infinity"][1])],
    ids=["surrogate", "infinity"],
)
def test_chat_message_postgres_cannot_store_is_400(client, chat_group, raw, message):
    chat = '{"model": "chat", "messages": [{"role": "user", "content": %s}]}'

    refused(
        send(client, "POST", "/openai/v1/chat/completions", chat % raw),
        "messages.0.content",
        message,
    )
    stop = '{"model": "chat", "stop": [%s], "messages": [{"role": "user", "content": "hi"}]}'
    refused(
        send(client, "POST", "/openai/v1/chat/completions", stop % raw),
        "stop.0",
        message,
    )
    refused(
        send(
            client,
            "POST",
            "/api/v1/groups/chat/predict/",
            f'{{"inputs": {{"prompt": {raw}}}}}',
        ),
        "inputs.prompt",
        message,
    )
    assert _logged(chat_group) == 0
    # A NUL is still answered: the log keeps U+FFFD in its place.
    answered = send(client, "POST", "/openai/v1/chat/completions", chat % '"a\\u0000b"')
    assert answered.status_code == 200, answered.content
    assert _logged(chat_group) == 1
