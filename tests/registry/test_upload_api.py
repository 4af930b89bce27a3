"""`POST /api/v1/models/upload/`, artifact downloads and the `/models/upload/` page."""

import hashlib
import json

import pytest
from django.urls import reverse
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.registry.artifacts import artifact_cache_clear
from apps.registry.models import ModelArtifact, ModelVersion, RegisteredModel
from tests.registry.artifact_helpers import (
    SCHEMA,
    fitted_logreg,
    malicious_pickle,
    onnx_add_model,
    skops_bytes,
    upload,
)

UPLOAD = "/api/v1/models/upload/"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    artifact_cache_clear()
    yield tmp_path / "media"
    artifact_cache_clear()


@pytest.fixture
def editor_api(tenant_a, make_user, api_client):
    return api_client(tenant_a, user=make_user(tenant_a, "editor"))


def post(client, data: bytes, name: str = "model.skops", **fields):
    return client.post(
        UPLOAD, {"file": upload(data, name), **fields}, format="multipart"
    )


def download_url(body: dict, index: int = 0) -> str:
    return body["artifacts"][index]["download_url"]


def test_editor_uploads_and_downloads_the_same_bytes(editor_api, media):
    data = skops_bytes(fitted_logreg())

    response = post(
        editor_api,
        data,
        "churn.skops",
        model_name="Churn model",
        input_schema=json.dumps(SCHEMA),
        metadata=json.dumps({"description": "tiny", "performance": {"accuracy": 0.9}}),
        label_map=upload(b'{"0": "stay", "1": "churn"}', "labels.json"),
        model_card=upload(b"# Churn", "card.md"),
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["number"] == 1
    assert body["model"] == "churn-model"
    assert body["source"] == "upload"
    assert body["status"] == "draft"
    assert [f["name"] for f in body["input_schema"]] == ["a", "b"]
    model_file = next(a for a in body["artifacts"] if a["role"] == "model")
    assert model_file["name"] == "churn.skops"
    assert model_file["format"] == "skops"
    assert model_file["sha256"] == hashlib.sha256(data).hexdigest()
    assert model_file["size"] == len(data)
    assert sorted((a["role"], a["format"]) for a in body["artifacts"]) == [
        ("label_map", "json"),
        ("model", "skops"),
        ("model_card", "text"),
    ]
    with schema_context("alpha"):
        version = ModelVersion.objects.get(pk=body["version"])
        assert version.metadata["description"] == "tiny"
        assert version.metrics == {"accuracy": 0.9}
        assert AuditEvent.objects.filter(action="version.upload").count() == 1

    got = editor_api.get(model_file["download_url"])
    assert got.status_code == 200
    assert b"".join(got.streaming_content) == data
    assert got["Content-Type"] == "application/octet-stream"
    assert 'filename="churn.skops"' in got["Content-Disposition"]


def test_manage_key_uploads_an_onnx_model(tenant_a, make_key, api_client):
    _, raw = make_key(tenant_a, "manage")
    response = post(
        api_client(tenant_a, key=raw), onnx_add_model(), "add.onnx", model_name="adder"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["artifacts"][0]["format"] == "onnx"
    assert response.json()["input_schema"][0]["name"] == "X"


def test_roles_viewer_and_predict_key_may_not_upload(
    tenant_a, make_user, make_key, api_client
):
    data = skops_bytes(fitted_logreg(["a", "b"]))
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    _, predict = make_key(tenant_a, "predict")

    as_viewer = post(viewer, data, model_name="x")
    as_predict = post(api_client(tenant_a, key=predict), data, model_name="x")
    anonymous = post(api_client(tenant_a), data, model_name="x")

    assert as_viewer.status_code == 403
    assert as_viewer.json()["error"]["message"] == (
        "This needs the editor role; you are viewer."
    )
    assert as_predict.status_code == 403
    assert "predict" in as_predict.json()["error"]["message"]
    assert anonymous.status_code in (401, 403)
    with schema_context("alpha"):
        assert not RegisteredModel.objects.filter(name="x").exists()


def test_viewer_may_download_but_predict_key_may_not(
    editor_api, tenant_a, make_user, make_key, api_client
):
    body = post(
        editor_api, skops_bytes(fitted_logreg(["a", "b"])), model_name="shared"
    ).json()
    viewer = api_client(tenant_a, user=make_user(tenant_a, "viewer"))
    _, predict = make_key(tenant_a, "predict")

    assert viewer.get(download_url(body)).status_code == 200
    assert api_client(tenant_a, key=predict).get(download_url(body)).status_code == 403


def test_pickle_upload_is_400_saying_why(editor_api, tmp_path, media):
    marker = tmp_path / "pwned"

    response = post(
        editor_api,
        malicious_pickle(str(marker)),
        "model.skops",
        model_name="evil",
        input_schema=json.dumps(SCHEMA),
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "pickle_refused"
    assert error["message"] == (
        "This is a pickle file. pickle/joblib files can run arbitrary code when "
        "loaded; export with skops (skops.io.dump) or ONNX."
    )
    assert list(error["fields"]) == ["file"]
    assert not marker.exists()
    assert [p for p in media.rglob("*") if p.is_file()] == []


def test_missing_input_schema_is_400_naming_it(editor_api):
    response = post(editor_api, skops_bytes(fitted_logreg()), model_name="nameless")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["input_schema"]
    with schema_context("alpha"):
        assert not RegisteredModel.objects.filter(name="nameless").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_schema", "[{oops", "Not valid JSON"),
        ("input_schema", '{"name": "a"}', "input_schema must be a JSON list."),
        ("metadata", "[1]", "metadata must be a JSON object."),
        # JSON text PostgreSQL's jsonb cannot store (Python's json reads all three).
        (
            "metadata",
            '{"output_schema": {"labels": ["a\\u0000"]}}',
            "Null characters are not allowed.",
        ),
        (
            "metadata",
            '{"feature_importance": {"\\ud800": 1}}',
            "Surrogate characters are not allowed: U+D800.",
        ),
        (
            "input_schema",
            '[{"name": "a", "type": "number", "constraints": {"enum": [1e400]}}]',
            "Numbers must be finite (no infinity or NaN).",
        ),
        (
            "input_schema",
            '[{"name": "a", "type": "categorical", "constraints": {"enum": ["\\ud800"]}}]',
            "Surrogate characters are not allowed: U+D800.",
        ),
        ("metadata", '{"output_schema": {"labels": [NaN]}}', "Numbers must be finite"),
    ],
)
def test_bad_json_fields_are_400_naming_them(editor_api, field, value, message):
    response = post(
        editor_api, skops_bytes(fitted_logreg()), model_name="j", **{field: value}
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    # the field, or a path inside it (metadata.output_schema.labels.0)
    [(name, messages)] = fields.items()
    assert name == field or name.startswith(f"{field}.")
    assert message in messages[0]


def test_invalid_metadata_is_400_naming_metadata(editor_api):
    response = post(
        editor_api,
        skops_bytes(fitted_logreg(["a", "b"])),
        model_name="m",
        metadata=json.dumps({"performance": {"accuracy": 7}}),
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["metadata"]


def test_disallowed_skops_type_is_400_naming_it(editor_api):
    from tests.registry.artifact_helpers import Sneaky

    response = post(
        editor_api,
        skops_bytes(Sneaky()),
        model_name="s",
        input_schema=json.dumps(SCHEMA),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "untrusted_types"
    assert (
        "tests.registry.artifact_helpers.Sneaky" in response.json()["error"]["message"]
    )


def test_size_limit_is_413(editor_api, settings):
    settings.ARTIFACT_MAX_BYTES = 64
    response = post(
        editor_api, skops_bytes(fitted_logreg(["a", "b"])), model_name="big"
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert list(response.json()["error"]["fields"]) == ["file"]


def test_missing_file_and_name_are_400(editor_api):
    response = editor_api.post(UPLOAD, {}, format="multipart")
    assert response.status_code == 400
    assert sorted(response.json()["error"]["fields"]) == ["file", "model_name"]


def test_tenant_b_cannot_download_tenant_a_artifact(
    editor_api, tenant_a, tenant_b, make_key, api_client
):
    body = post(
        editor_api, skops_bytes(fitted_logreg(["a", "b"])), model_name="secret"
    ).json()
    _, b_key = make_key(tenant_b, "manage")
    as_b = api_client(tenant_b, key=b_key)

    response = as_b.get(download_url(body))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert editor_api.get(download_url(body)).status_code == 200
    # A's own key does not open A's file through B's host either.
    _, a_key = make_key(tenant_a, "manage")
    a_key_on_b = api_client(tenant_a, key=a_key, host="beta.test")
    assert a_key_on_b.get(download_url(body)).status_code in (401, 403)


def test_a_download_of_another_version_is_404(editor_api):
    body = post(
        editor_api, skops_bytes(fitted_logreg(["a", "b"])), model_name="v"
    ).json()
    artifact_id = body["artifacts"][0]["id"]
    url = f"/api/v1/models/versions/{body['version'] + 1}/artifacts/{artifact_id}/download/"

    assert editor_api.get(url).status_code == 404


def test_a_tampered_file_is_not_downloaded(editor_api, media):
    body = post(
        editor_api, skops_bytes(fitted_logreg(["a", "b"])), model_name="t"
    ).json()
    with schema_context("alpha"):
        artifact = ModelArtifact.objects.get(pk=body["artifacts"][0]["id"])
    path = media / "alpha" / artifact.path
    path.write_bytes(path.read_bytes() + b"\x00")

    response = editor_api.get(download_url(body))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "artifact_tampered"


def test_the_upload_url_is_not_taken_by_a_model_slug():
    assert reverse("api:version-upload") == UPLOAD
    assert (
        reverse("api:artifact-download", kwargs={"version_id": 1, "artifact_id": 2})
        == "/api/v1/models/versions/1/artifacts/2/download/"
    )


# --- the page ----------------------------------------------------------------------------


PAGE = "/models/upload/"


def test_page_upload_redirects_with_a_message(tenant_a, make_user, page_client):
    client = page_client(tenant_a, make_user(tenant_a, "editor"))
    assert client.get(PAGE).status_code == 200

    response = client.post(
        PAGE,
        {
            "file": upload(skops_bytes(fitted_logreg()), "m.skops"),
            "model_name": "From the page",
            "input_schema": "a\nb: integer",
            "model_card": upload(b"# Card", "card.md"),
        },
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain
    assert "From the page v1 is registered (2 features)." in response.content.decode()
    with schema_context("alpha"):
        version = ModelVersion.objects.get(model__name="From the page")
        assert version.input_schema == [
            {"name": "a", "type": "number", "required": True},
            {"name": "b", "type": "integer", "required": True},
        ]
        assert version.artifacts.count() == 2


def test_page_shows_service_errors_in_the_form(tenant_a, make_user, page_client):
    client = page_client(tenant_a, make_user(tenant_a, "editor"))

    response = client.post(
        PAGE,
        {"file": upload(b"\x80\x04K\x01.", "m.skops"), "model_name": "bad"},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "pickle/joblib files can run arbitrary code when loaded" in page
    assert 'class="field has-error"' in page

    missing = client.post(
        PAGE,
        {"file": upload(skops_bytes(fitted_logreg()), "m.skops"), "model_name": "x"},
    )
    assert missing.status_code == 400
    assert "the model does not name its features" in missing.content.decode()

    bad_type = client.post(
        PAGE,
        {
            "file": upload(skops_bytes(fitted_logreg()), "m.skops"),
            "model_name": "x",
            "input_schema": "a: tensor",
        },
    )
    assert "Line 1: &#x27;tensor&#x27; is not one of" in bad_type.content.decode()


def test_page_viewer_sees_why_and_cannot_post(tenant_a, make_user, page_client):
    client = page_client(tenant_a, make_user(tenant_a, "viewer"))

    page = client.get(PAGE)
    posted = client.post(
        PAGE,
        {"file": upload(skops_bytes(fitted_logreg(["a", "b"]))), "model_name": "v"},
    )

    assert page.status_code == 200
    assert "Uploading needs the editor role" in page.content.decode()
    assert posted.status_code == 403
    with schema_context("alpha"):
        assert not RegisteredModel.objects.filter(name="v").exists()
