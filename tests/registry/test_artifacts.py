"""Artifact files: content sniffing, refusals, hashing, verified loading, tenancy."""

import functools
import gzip
import hashlib
import io
import os
import pickle
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from apps.audit.models import AuditEvent
from apps.core.errors import ApplicationError
from apps.registry import artifacts
from apps.registry.artifacts import (
    SKOPS_ALLOWED_TYPES,
    artifact_cache_clear,
    artifact_cache_size,
    artifact_load,
    artifact_store,
    feature_schema_from_model,
    sanitise_name,
)
from apps.registry.models import ModelArtifact, ModelVersion, RegisteredModel
from apps.registry.services import model_create, version_create
from apps.registry.uploads import version_upload
from tests.registry.artifact_helpers import (
    SCHEMA,
    Sneaky,
    X,
    Y,
    fitted_logreg,
    malicious_pickle,
    onnx_add_model,
    onnx_unknown_op_model,
    skops_bytes,
    upload,
    zip_without_schema,
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    artifact_cache_clear()
    yield tmp_path / "media"
    artifact_cache_clear()


@pytest.fixture
def alpha(tenant_a):
    with schema_context("alpha"):
        yield tenant_a


@pytest.fixture
def version(alpha):
    model = model_create(name="plain", actor="test")
    return version_create(model=model, source="upload", actor="test")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def refused(**kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        version_upload(actor="test", **kwargs)
    return info.value


# --- the happy paths -----------------------------------------------------------------


def test_skops_upload_is_hashed_stored_loaded_and_predicts(alpha, media):
    estimator = fitted_logreg()
    data = skops_bytes(estimator)

    version = version_upload(
        file=upload(data, "churn.skops"),
        model_name="Churn",
        input_schema=SCHEMA,
        actor="test",
    )

    artifact = version.artifacts.get()
    assert artifact.format == "skops"
    assert artifact.role == "model"
    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert artifact.size == len(data)
    assert artifact.original_name == "churn.skops"
    stored = media / "alpha" / artifact.path
    assert stored.read_bytes() == data
    assert stored.parent == media / "alpha" / "artifacts" / str(version.pk)
    assert stored.suffix == ".skops" and "churn" not in stored.name
    assert version.source == "upload"
    assert version.status == "draft"
    assert version.metadata["model_info"]["provider"] == "upload"
    assert version.metadata["training"]["framework"] == "scikit-learn"
    assert version.input_schema == [
        {"name": "a", "type": "number", "required": True},
        {"name": "b", "type": "number", "required": True},
    ]
    assert version.model.task_type == "classification"
    assert AuditEvent.objects.filter(
        action="version.upload", object_id=str(version.pk)
    ).exists()

    artifact_cache_clear()
    loaded = artifact_load(artifact)
    assert loaded.predict(X).tolist() == estimator.predict(X).tolist()
    assert np.allclose(loaded.predict_proba(X), estimator.predict_proba(X))


def test_feature_names_in_become_the_input_schema(alpha):
    data = skops_bytes(fitted_logreg(["age", "income"]))

    version = version_upload(file=upload(data), model_name="named", actor="test")

    assert version.input_schema == [
        {"name": "age", "type": "number", "required": True},
        {"name": "income", "type": "number", "required": True},
    ]
    assert version.metadata["input_schema"] == version.input_schema


def test_given_schema_must_name_the_fitted_features(alpha, media):
    data = skops_bytes(fitted_logreg(["age", "income"]))

    error = refused(
        file=upload(data),
        model_name="named",
        input_schema=[{"name": "age", "type": "number"}],
    )

    assert error.fields == {"input_schema": ["The model expects exactly: age, income."]}
    assert files_under(media) == []

    reordered = version_upload(
        file=upload(data),
        model_name="named",
        input_schema=[
            {"name": "income", "type": "number"},
            {"name": "age", "type": "integer"},
        ],
        actor="test",
    )
    assert [f["name"] for f in reordered.input_schema] == ["age", "income"]
    assert reordered.input_schema[0]["type"] == "integer"


def test_missing_input_schema_names_the_field_and_leaves_nothing(alpha, media):
    error = refused(file=upload(skops_bytes(fitted_logreg())), model_name="nameless")

    assert error.status_code == 400
    assert "input_schema" in error.fields
    assert "feature_names_in_" in error.message
    assert not RegisteredModel.objects.filter(name="nameless").exists()
    assert ModelVersion.objects.count() == 0
    assert ModelArtifact.objects.count() == 0
    assert files_under(media) == []


def test_invalid_input_schema_is_refused_before_anything_is_written(alpha, media):
    error = refused(
        file=upload(skops_bytes(fitted_logreg())),
        model_name="bad-schema",
        input_schema=[{"name": "a", "type": "tensor"}],
    )

    assert error.fields == {"input_schema": ['0.type: "tensor" is not a valid choice.']}
    assert files_under(media) == []


def _categorical_x() -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.empty((40, 2), dtype=object)
    out[:, 0] = rng.normal(size=40)
    out[:, 1] = rng.choice(["red", "green", "blue"], 40)
    return out


SUPPORTED = [
    (LinearRegression(), "r"),
    (Ridge(), "r"),
    (DecisionTreeClassifier(), "c"),
    (DecisionTreeRegressor(), "r"),
    (RandomForestClassifier(n_estimators=3, random_state=0), "c"),
    (RandomForestRegressor(n_estimators=3, random_state=0), "r"),
    (GradientBoostingClassifier(n_estimators=3), "c"),
    (GradientBoostingRegressor(n_estimators=3), "r"),
    (HistGradientBoostingClassifier(max_iter=3), "c"),
    (HistGradientBoostingRegressor(max_iter=3), "r"),
    (HistGradientBoostingClassifier(max_iter=3, categorical_features=[1]), "cat"),
    (Pipeline([("scale", StandardScaler()), ("tree", DecisionTreeClassifier())]), "c"),
    (
        Pipeline(
            [
                (
                    "columns",
                    ColumnTransformer(
                        [
                            ("num", StandardScaler(), [0]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), [1]),
                        ]
                    ),
                ),
                ("forest", RandomForestClassifier(n_estimators=3, random_state=0)),
            ]
        ),
        "mixed",
    ),
]


@pytest.mark.parametrize(
    ("estimator", "kind"),
    SUPPORTED,
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_every_supported_estimator_passes_the_allow_list(version, estimator, kind):
    if kind == "mixed":
        features, target = _categorical_x(), (_categorical_x()[:, 0] > 0).astype(int)
    elif kind == "cat":
        rng = np.random.default_rng(1)
        features = np.column_stack([rng.normal(size=40), rng.integers(0, 3, 40)])
        target = (features[:, 0] > 0).astype(int)
    else:
        features, target = X, (Y if kind == "c" else X[:, 0] * 3.0)
    estimator.fit(features, target)

    artifact = artifact_store(
        version=version,
        uploaded_file=upload(skops_bytes(estimator)),
        role="model",
        actor="test",
    )
    loaded = artifact_load(artifact)

    assert loaded.predict(features).tolist() == estimator.predict(features).tolist()


def test_the_allow_list_is_what_the_supported_estimators_need():
    assert {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "functools.partial",
        "sklearn.utils.validation.check_array",
    } == SKOPS_ALLOWED_TYPES


# --- refusals -------------------------------------------------------------------------


PICKLE_WHY = "pickle/joblib files can run arbitrary code when loaded"


def test_the_malicious_payload_is_live_when_unpickled(tmp_path):
    # Proves the refusal tests below would notice if anything unpickled the upload.
    marker = tmp_path / "ran"
    pickle.loads(malicious_pickle(str(marker)))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 5])
def test_a_malicious_pickle_is_refused_and_never_runs(alpha, media, tmp_path, protocol):
    marker = tmp_path / "pwned"

    error = refused(
        file=upload(malicious_pickle(str(marker), protocol), "model.skops"),
        model_name="evil",
        input_schema=SCHEMA,
    )

    assert error.code == "pickle_refused"
    assert PICKLE_WHY in error.message
    assert "skops.io.dump" in error.message and "ONNX" in error.message
    assert PICKLE_WHY in error.fields["file"][0]
    assert not marker.exists()
    assert files_under(media) == []
    assert ModelVersion.objects.count() == 0


def test_a_harmless_pickle_is_refused_too(alpha):
    error = refused(
        file=upload(pickle.dumps({"weights": [1, 2, 3]}), "weights.onnx"),
        model_name="harmless",
        input_schema=SCHEMA,
    )

    assert error.code == "pickle_refused"
    assert error.message.startswith("This is a pickle file.")


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3)])
def test_joblib_files_are_refused(alpha, media, compress):
    buffer = io.BytesIO()
    joblib.dump(fitted_logreg(), buffer, compress=compress)

    error = refused(
        file=upload(buffer.getvalue(), "model.joblib"),
        model_name="jl",
        input_schema=SCHEMA,
    )

    assert error.code == "pickle_refused"
    assert PICKLE_WHY in error.message
    assert files_under(media) == []


def test_compressed_pickles_are_named_joblib():
    body = pickle.dumps(fitted_logreg())
    assert artifacts._sniff_pickle_or_joblib(zlib.compress(body)[:4096]) == "joblib"
    assert artifacts._sniff_pickle_or_joblib(gzip.compress(body)[:4096]) == "joblib"
    assert artifacts._sniff_pickle_or_joblib(b"xylophone notes") is None


def test_a_skops_file_with_a_custom_class_is_refused_naming_it(alpha, media):
    error = refused(
        file=upload(skops_bytes(Sneaky())),
        model_name="sneaky",
        input_schema=SCHEMA,
    )

    assert error.code == "untrusted_types"
    assert "tests.registry.artifact_helpers.Sneaky" in error.message
    assert files_under(media) == []


def test_an_allowed_wrapper_does_not_smuggle_a_function(alpha):
    payload = functools.partial(os.system, "touch /tmp/never")

    error = refused(
        file=upload(skops_bytes({"model": payload})),
        model_name="partial",
        input_schema=SCHEMA,
    )

    assert error.code == "untrusted_types"
    assert "posix.system" in error.message
    assert "functools.partial" not in error.message


def test_a_skops_file_with_builtins_eval_is_refused(alpha):
    error = refused(
        file=upload(skops_bytes([eval])), model_name="ev", input_schema=SCHEMA
    )
    assert "builtins.eval" in error.message


def test_a_skops_file_without_an_estimator_is_refused(alpha, media):
    error = refused(
        file=upload(skops_bytes(StandardScaler().fit(X))),
        model_name="scaler",
        input_schema=SCHEMA,
    )
    assert error.code == "not_a_model"
    assert "StandardScaler" in error.message
    assert files_under(media) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (zip_without_schema(), "no schema.json"),
        (b"PK\x03\x04 not really a zip", "damaged zip"),
        (b"just some text", "neither a skops file nor an ONNX model"),
        (b"", "empty"),
    ],
)
def test_other_content_is_refused_whatever_its_name(alpha, data, message):
    error = refused(
        file=upload(data, "model.skops"), model_name="junk", input_schema=SCHEMA
    )
    assert message in error.message
    assert "file" in error.fields


def test_size_limit_is_enforced(alpha, media, settings):
    data = skops_bytes(fitted_logreg())
    settings.ARTIFACT_MAX_BYTES = len(data) - 1

    error = refused(file=upload(data), model_name="big", input_schema=SCHEMA)

    assert error.status_code == 413
    assert error.code == "file_too_large"
    assert f"limit of {len(data) - 1} bytes" in error.message
    assert files_under(media) == []

    settings.ARTIFACT_MAX_BYTES = len(data)
    assert (
        version_upload(
            file=upload(data), model_name="big", input_schema=SCHEMA, actor="test"
        ).artifacts.count()
        == 1
    )


def test_size_limit_holds_while_streaming_when_the_size_is_not_declared(
    version, media, settings
):
    data = skops_bytes(fitted_logreg())
    settings.ARTIFACT_MAX_BYTES = 100
    file = upload(data)
    file.size = None  # a stream that does not say how long it is

    with pytest.raises(ApplicationError, match="larger than the limit of 100 bytes"):
        artifact_store(version=version, uploaded_file=file, role="model", actor="t")

    assert files_under(media) == []


def test_a_traversal_file_name_never_leaves_the_tenant_directory(alpha, media):
    data = skops_bytes(fitted_logreg(["a", "b"]))

    version = version_upload(
        file=upload(data, "../../etc/passwd.skops"), model_name="trav", actor="test"
    )

    artifact = version.artifacts.get()
    assert artifact.original_name == "passwd.skops"
    assert ".." not in artifact.path
    stored = (media / "alpha" / artifact.path).resolve()
    assert stored.is_relative_to((media / "alpha").resolve())
    assert files_under(media) == [stored]
    assert not (media.parent / "etc").exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd.skops", "passwd.skops"),
        ("..\\..\\win.ini", "win.ini"),
        ("/abs/path/m.onnx", "m.onnx"),
        ("..", "upload"),
        ("", "upload"),
        ("a\x00b\nc.skops", "abc.skops"),
        (".hidden", "hidden"),
    ],
)
def test_original_names_are_sanitised(given, expected):
    assert sanitise_name(given) == expected


def test_a_stored_path_that_escapes_is_refused_on_load(version):
    artifact = artifact_store(
        version=version,
        uploaded_file=upload(skops_bytes(fitted_logreg())),
        role="model",
        actor="test",
    )
    ModelArtifact.objects.filter(pk=artifact.pk).update(path="../beta/x.skops")
    artifact.refresh_from_db()

    with pytest.raises(ApplicationError) as info:
        artifact_load(artifact)
    assert info.value.code == "artifact_tampered"


# --- verification on load ---------------------------------------------------------------


def test_a_tampered_artifact_is_never_loaded(version, media, monkeypatch):
    artifact = artifact_store(
        version=version,
        uploaded_file=upload(skops_bytes(fitted_logreg())),
        role="model",
        actor="test",
    )
    path = media / "alpha" / artifact.path
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    calls = []
    monkeypatch.setattr("skops.io.loads", lambda *a, **k: calls.append(a))

    with pytest.raises(ApplicationError) as info:
        artifact_load(artifact)

    assert info.value.code == "artifact_tampered"
    assert info.value.status_code == 409
    assert calls == []
    assert artifact_cache_size() == 0


def test_disallowed_types_are_refused_on_load_too(version, media):
    # A row whose file hashes correctly but names a type outside the allow-list
    # (written by an older release, or by hand): load still refuses.
    data = skops_bytes(Sneaky())
    relative = f"artifacts/{version.pk}/handmade.skops"
    (media / "alpha" / relative).parent.mkdir(parents=True)
    (media / "alpha" / relative).write_bytes(data)
    artifact = ModelArtifact.objects.create(
        version=version,
        role="model",
        format="skops",
        path=relative,
        original_name="handmade.skops",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )

    with pytest.raises(
        ApplicationError, match=r"not allowed: .*artifact_helpers\.Sneaky"
    ):
        artifact_load(artifact)


def test_an_allow_list_change_is_applied_on_load(version, monkeypatch):
    tree = DecisionTreeClassifier().fit(X, Y)
    artifact = artifact_store(
        version=version,
        uploaded_file=upload(skops_bytes(tree)),
        role="model",
        actor="test",
    )
    artifact_cache_clear()
    monkeypatch.setattr(artifacts, "SKOPS_ALLOWED_TYPES", frozenset())

    with pytest.raises(ApplicationError, match=r"sklearn\.tree\._tree\.Tree"):
        artifact_load(artifact)


def test_loaded_models_are_cached_per_artifact_and_hash(version, settings):
    settings.ARTIFACT_CACHE_SIZE = 1
    first = artifact_store(
        version=version,
        uploaded_file=upload(skops_bytes(fitted_logreg())),
        role="model",
        actor="test",
    )
    other = artifact_store(
        version=version,
        uploaded_file=upload(b'{"0": "no", "1": "yes"}', "labels.json"),
        role="label_map",
        actor="test",
    )
    assert other.format == "json"

    assert artifact_load(first) is artifact_load(first)
    assert artifact_cache_size() == 1
    changed = ModelArtifact.objects.get(pk=first.pk)
    changed.sha256 = "0" * 64  # another hash: another key, and a failed check
    with pytest.raises(ApplicationError, match="does not match its sha256"):
        artifact_load(changed)
    artifact_cache_clear()
    assert artifact_cache_size() == 0
    with pytest.raises(ApplicationError, match="not a model file"):
        artifact_load(other)


def test_the_cache_keeps_at_most_its_size(alpha, settings):
    settings.ARTIFACT_CACHE_SIZE = 2
    loaded = []
    for i in range(3):
        version = version_upload(
            file=upload(skops_bytes(fitted_logreg(["a", "b"]))),
            model_name=f"m{i}",
            actor="test",
        )
        loaded.append(artifact_load(version.artifacts.get()))
    assert artifact_cache_size() == 2


# --- ONNX -----------------------------------------------------------------------------------


def test_onnx_upload_runs_through_artifact_load(alpha, media):
    data = onnx_add_model()

    version = version_upload(file=upload(data, "add.onnx"), model_name="add", actor="t")

    artifact = version.artifacts.get()
    assert artifact.format == "onnx"
    assert (media / "alpha" / artifact.path).suffix == ".onnx"
    assert version.metadata["training"]["framework"] == "onnx"
    assert version.input_schema == [
        {
            "name": "X",
            "type": "array",
            "required": True,
            "description": "ONNX input tensor(float) [N, 2]",
        }
    ]
    artifact_cache_clear()
    session = artifact_load(artifact)
    (out,) = session.run(None, {"X": np.array([[1.0, 2.0]], dtype=np.float32)})
    assert out.tolist() == [[11.0, 22.0]]


def test_onnx_with_external_data_is_refused(alpha, media):
    error = refused(
        file=upload(onnx_add_model(external=True), "add.onnx"), model_name="ext"
    )

    assert error.code == "onnx_external_data"
    assert "external data" in error.message and "bias" in error.message
    assert files_under(media) == []


def test_an_onnx_model_onnxruntime_cannot_run_is_refused(alpha, media):
    error = refused(file=upload(onnx_unknown_op_model()), model_name="unknown-op")

    assert error.code == "artifact_unloadable"
    assert "com.example:Foo" in error.message
    assert list(error.fields) == ["file"]
    assert files_under(media) == []


def test_feature_schema_from_model_without_names_is_none():
    assert feature_schema_from_model(fitted_logreg()) is None
    assert feature_schema_from_model(fitted_logreg(["x", "y"])) == [
        {"name": "x", "type": "number", "required": True},
        {"name": "y", "type": "number", "required": True},
    ]


# --- extra files, atomicity, tenancy --------------------------------------------------------


def test_label_map_and_model_card_are_stored_with_their_formats(alpha, media):
    version = version_upload(
        file=upload(skops_bytes(fitted_logreg(["a", "b"]))),
        model_name="with-docs",
        extra_files=[
            ("label_map", upload(b'{"0": "stay", "1": "churn"}', "labels.json")),
            ("model_card", upload("# Churn\n\nÜber gut.".encode(), "README.md")),
        ],
        actor="test",
    )

    by_role = {a.role: a for a in version.artifacts.all()}
    assert by_role["label_map"].format == "json"
    assert by_role["model_card"].format == "text"
    assert (media / "alpha" / by_role["model_card"].path).suffix == ".txt"
    assert len(files_under(media)) == 3


def test_a_bad_extra_file_rolls_back_everything(alpha, media, tmp_path):
    marker = tmp_path / "card"

    error = refused(
        file=upload(skops_bytes(fitted_logreg(["a", "b"]))),
        model_name="rolled-back",
        extra_files=[
            ("label_map", upload(b"\xff\xfe\x00binary", "labels.bin")),
        ],
    )
    assert error.fields == {
        "label_map": ["A label map or model card is JSON or UTF-8 text."]
    }

    error = refused(
        file=upload(skops_bytes(fitted_logreg(["a", "b"]))),
        model_name="rolled-back",
        extra_files=[("model_card", upload(malicious_pickle(str(marker))))],
    )
    assert error.code == "pickle_refused"
    assert not marker.exists()
    assert not RegisteredModel.objects.filter(name="rolled-back").exists()
    assert ModelArtifact.objects.count() == 0
    assert files_under(media) == []


def test_a_second_upload_adds_version_two(alpha):
    data = skops_bytes(fitted_logreg(["a", "b"]))
    first = version_upload(file=upload(data), model_name="twice", actor="t")
    second = version_upload(file=upload(data), model_name="twice", actor="t")
    assert (first.number, second.number) == (1, 2)
    assert first.model_id == second.model_id


def test_tenant_files_are_kept_apart(tenant_a, tenant_b, media):
    data = skops_bytes(fitted_logreg(["a", "b"]))
    with schema_context("alpha"):
        a = version_upload(file=upload(data), model_name="same", actor="t")
        a_artifact = a.artifacts.get()
    with schema_context("beta"):
        b = version_upload(file=upload(data), model_name="same", actor="t")
        b_artifact = b.artifacts.get()
        # Beta reading alpha's row (same ids, say) would look in beta's directory.
        assert artifacts.artifact_file_path(a_artifact).is_relative_to(media / "beta")
    assert files_under(media / "alpha") == [media / "alpha" / a_artifact.path]
    assert files_under(media / "beta") == [media / "beta" / b_artifact.path]


def test_store_refuses_an_unknown_role(version):
    with pytest.raises(ApplicationError, match="Unknown artifact role"):
        artifact_store(
            version=version,
            uploaded_file=SimpleUploadedFile("x", b"{}"),
            role="weights",
            actor="t",
        )
