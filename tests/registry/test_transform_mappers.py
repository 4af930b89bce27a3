"""Detection, mappers, validation and the confidence formula: pure functions, no
database. Samples are written in the shape of the public formats."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from apps.registry.metadata import validate_metadata
from apps.registry.transform.canonical import (
    field_paths,
    overall_confidence,
    validate_partial,
)
from apps.registry.transform.detect import FORMATS, detect_format, parse_payload, unwrap
from apps.registry.transform.llm import (
    canonical_json_schema,
    parse_answer,
    response_json_schema,
    score_answer,
)
from apps.registry.transform.mappers import (
    MAPPERS,
    PARAMETER_WARNING,
    estimate_parameters,
    map_payload,
)
from apps.registry.transform.quality import quality_of
from tests.registry import transform_helpers as s


def run(payload):
    parsed = parse_payload(payload)
    data, _ = unwrap(parsed.data)
    detection = detect_format(data, syntax=parsed.syntax)
    return detection, map_payload(detection.format, data, body=parsed.body)


def assert_valid(mapping) -> None:
    """Valid canonical metadata and one confidence 0..1 per field."""
    assert validate_metadata(mapping.metadata) == mapping.metadata
    assert set(mapping.confidence) == set(field_paths(mapping.metadata))
    assert all(0 <= c <= 1 for c in mapping.confidence.values())


# --- detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (s.LLAMA2_CONFIG, "huggingface_config"),
        (json.dumps(s.MISTRAL_CONFIG), "huggingface_config"),
        (s.BERT_CONFIG, "huggingface_config"),
        (s.DISTILBERT_SST2_CONFIG, "huggingface_config"),
        (s.GPT2_CONFIG, "huggingface_config"),
        (s.VIT_BEANS_CONFIG, "huggingface_config"),
        (s.MODEL_CARD, "huggingface_model_card"),
        (s.MLMODEL, "mlflow_mlmodel"),
        (yaml.safe_load(s.MLMODEL), "mlflow_mlmodel"),
        (s.OIP_METADATA, "oip_model_metadata"),
        (json.dumps(s.OPENAI_MODEL), "openai_model"),
        ({"object": "list", "data": [s.OPENAI_MODEL]}, "openai_model"),
        (s.ANTHROPIC_MODEL, "anthropic_model"),
        (s.GEMINI_MODEL, "google_model"),
        ({"models": [s.GEMINI_EMBEDDING]}, "google_model"),
        (s.CANONICAL, "canonical"),
        (s.UNKNOWN_FORMAT, "unknown"),
        ("just some words about a model", "unknown"),
        ([s.OPENAI_MODEL, s.OPENAI_EMBEDDING], "unknown"),
    ],
)
def test_format_is_detected_without_being_told(payload, expected):
    detection, mapping = run(payload)

    assert detection.format == expected
    assert_valid(mapping)


def test_model_card_header_is_read_and_its_first_paragraph_kept():
    parsed = parse_payload(s.MODEL_CARD)

    assert parsed.syntax == "model_card"
    assert parsed.data["pipeline_tag"] == "text-classification"
    assert parsed.body.lstrip().startswith("# distilbert-imdb-sentiment")


def test_yaml_aliases_are_refused_and_the_text_is_kept_as_text():
    bomb = 'a: &a ["x","x","x"]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n'

    parsed = parse_payload(bomb)

    assert parsed.syntax == "text"
    assert parsed.data == bomb
    assert "YAML aliases are not accepted" in parsed.warnings[0]


def test_yaml_dates_and_nan_become_json_values():
    parsed = parse_payload("trained: 2024-03-01\nscore: .nan\nn: 3\n")

    assert parsed.data == {"trained": "2024-03-01", "score": None, "n": 3}


# --- HuggingFace config ----------------------------------------------------------------


def test_llama2_config_maps_to_a_text_generation_transformer():
    detection, mapping = run(s.LLAMA2_CONFIG)

    assert detection.confidence == 1.0
    assert mapping.metadata == {
        "model_info": {
            "architecture": "transformer",
            "architecture_detail": "LlamaForCausalLM (float16)",
            "task": "text-generation",
            "modalities": ["text"],
            "capabilities": ["completion"],
            "context_window": 4096,
            "parameter_count": 6_740_000_000,
            "name": "meta-llama/Llama-2-7b-hf",
            "repo_id": "meta-llama/Llama-2-7b-hf",
        },
        "training": {"framework": "transformers", "framework_version": "4.31.0.dev0"},
    }
    assert mapping.confidence == {
        "model_info.architecture": 0.95,
        "model_info.architecture_detail": 0.95,
        "model_info.task": 0.9,
        "model_info.modalities": 0.85,
        "model_info.capabilities": 0.6,
        "model_info.context_window": 0.9,
        "model_info.parameter_count": 0.3,
        "model_info.name": 0.7,
        "model_info.repo_id": 0.7,
        "training.framework": 0.9,
        "training.framework_version": 0.95,
    }
    assert mapping.warnings == [PARAMETER_WARNING]
    assert "is an estimate" in PARAMETER_WARNING


def test_mistral_context_window_warns_about_the_sliding_window():
    _, mapping = run(s.MISTRAL_CONFIG)

    info = mapping.metadata["model_info"]
    assert (info["context_window"], info["parameter_count"]) == (32768, 7_240_000_000)
    assert mapping.confidence["model_info.context_window"] == 0.8
    assert mapping.warnings[0] == (
        "Attention is windowed to 4096 tokens (sliding_window); the context window "
        "is max_position_embeddings=32768."
    )


def test_bert_masked_lm_is_fill_mask_with_absolute_positions_counted():
    _, mapping = run(s.BERT_CONFIG)

    info = mapping.metadata["model_info"]
    assert (info["task"], info["context_window"], info["parameter_count"]) == (
        "fill-mask",
        512,
        109_000_000,
    )
    assert "capabilities" not in info
    assert mapping.confidence["model_info.task"] == 0.9


def test_distilbert_classifier_keeps_its_labels_as_output_schema():
    _, mapping = run(s.DISTILBERT_SST2_CONFIG)

    assert mapping.metadata["model_info"]["task"] == "text-classification"
    assert mapping.metadata["model_info"]["parameter_count"] == 66_300_000
    assert mapping.metadata["output_schema"] == {
        "type": "categorical",
        "labels": ["NEGATIVE", "POSITIVE"],
    }
    assert mapping.confidence["output_schema"] == 0.9


def test_gpt2_context_comes_from_n_positions():
    _, mapping = run(s.GPT2_CONFIG)

    info = mapping.metadata["model_info"]
    assert info["task"] == "text-generation"
    assert info["context_window"] == 1024
    assert info["parameter_count"] == 124_000_000
    assert mapping.confidence["model_info.task"] == 0.85
    assert "training" not in mapping.metadata


def test_vit_is_an_image_classifier_without_a_context_window():
    _, mapping = run(s.VIT_BEANS_CONFIG)

    assert mapping.metadata["model_info"] == {
        "architecture": "transformer",
        "architecture_detail": "ViTForImageClassification (float32)",
        "task": "image-classification",
        "modalities": ["image"],
        "capabilities": ["classification"],
    }
    assert mapping.metadata["output_schema"]["labels"] == [
        "angular_leaf_spot",
        "bean_rust",
        "healthy",
    ]
    assert mapping.warnings == []


@pytest.mark.parametrize(
    ("architecture", "model_type", "task", "confidence"),
    [
        ("T5ForConditionalGeneration", "t5", "text-generation", 0.6),
        ("BartForConditionalGeneration", "bart", "summarization", 0.6),
        ("MarianMTModel", "marian", "translation", 0.8),
        ("MarianForConditionalGeneration", "marian", "translation", 0.7),
        ("WhisperForConditionalGeneration", "whisper", "speech-recognition", 0.85),
        ("BertForTokenClassification", "bert", "token-classification", 0.9),
        ("RobertaForQuestionAnswering", "roberta", "question-answering", 0.9),
        ("DetrForObjectDetection", "detr", "object-detection", 0.9),
        ("BertModel", "bert", "embedding", 0.5),
    ],
)
def test_task_comes_from_the_architecture_suffix(
    architecture, model_type, task, confidence
):
    _, mapping = run(
        {"architectures": [architecture], "model_type": model_type, "d_model": 512}
    )

    assert mapping.metadata.get("model_info", {}).get("task") == task
    assert mapping.confidence.get("model_info.task") == confidence


def test_ambiguous_heads_say_so_in_a_warning():
    _, mapping = run(
        {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5"}
    )

    assert mapping.warnings == [
        "model_info.task 'text-generation' is inferred from T5ForConditionalGeneration, "
        "a head that serves more than one task."
    ]


def test_parameter_estimate_counts_grouped_kv_heads_and_experts():
    mixtral = {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "vocab_size": 32000,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "tie_word_embeddings": False,
    }

    # Mixtral 8x7B has 46.7 billion parameters.
    assert estimate_parameters(mixtral, "mixtral") == 46_700_000_000
    assert estimate_parameters({"hidden_size": 4096}, "llama") is None


# --- model card, MLflow, OIP --------------------------------------------------------


def test_model_card_maps_license_task_datasets_metrics_and_description():
    _, mapping = run(s.MODEL_CARD)

    assert mapping.metadata == {
        "model_info": {
            "task": "text-classification",
            "modalities": ["text"],
            "architecture": "transformer",
            "architecture_detail": "distilbert",
            "name": "distilbert-imdb-sentiment",
        },
        "training": {"framework": "transformers", "dataset": "imdb"},
        "performance": {
            "accuracy": 0.9312,
            "f1": 0.9309,
            "extra": {"matthews_correlation": 0.71},
        },
        "license": "apache-2.0",
        "description": "This model is a fine-tuned version of distilbert-base-uncased "
        "on the imdb dataset. It classifies movie reviews as positive or negative.",
    }
    assert mapping.confidence["performance.accuracy"] == 0.7
    assert mapping.confidence["performance.f1"] == 0.9
    assert mapping.confidence["license"] == 0.95
    assert "performance.accuracy was reported in percent; stored as 0.9312." in (
        mapping.warnings
    )
    assert mapping.suggestions == [
        "base_model 'distilbert-base-uncased': record it as the version's parent if "
        "it is registered here."
    ]


def test_model_card_with_other_license_and_no_body_uses_license_name():
    card = (
        "---\nlicense: other\nlicense_name: llama2\nbase_model: meta-llama/Llama-2-7b\n"
        "pipeline_tag: automatic-speech-recognition\n---\n"
    )

    _, mapping = run(card)

    assert mapping.metadata["license"] == "llama2"
    assert mapping.metadata["model_info"]["task"] == "speech-recognition"
    assert mapping.metadata["model_info"]["modalities"] == ["audio"]
    assert mapping.metadata["description"] == "Fine-tuned from meta-llama/Llama-2-7b."
    assert mapping.confidence["license"] == 0.85


def test_mlmodel_signature_becomes_the_input_schema():
    _, mapping = run(s.MLMODEL)

    assert mapping.metadata == {
        "training": {
            "framework": "scikit-learn",
            "framework_version": "1.3.2",
            "trained_at": "2024-01-15",
        },
        "input_schema": [
            {"name": "sepal length (cm)", "type": "number", "required": True},
            {"name": "sepal width (cm)", "type": "number", "required": True},
            {"name": "petal length (cm)", "type": "number", "required": True},
            {"name": "petal width (cm)", "type": "number", "required": True},
            {"name": "site", "type": "string", "required": False},
            {"name": "photo", "type": "string", "required": False},
        ],
        "model_info": {"modalities": ["tabular"], "task": "classification"},
        "output_schema": {"type": "integer"},
    }
    assert mapping.confidence == {
        "training.framework": 0.9,
        "training.framework_version": 0.9,
        "training.trained_at": 0.8,
        "input_schema": 0.95,
        "model_info.modalities": 0.85,
        "model_info.task": 0.5,
        "output_schema": 0.9,
    }
    assert mapping.warnings == [
        "'photo' is binary: it is described as a base64 string.",
        "model_info.task 'classification' is guessed from the output type (integer).",
    ]


@pytest.mark.parametrize(
    ("mlflow_type", "ours"),
    [
        ("double", "number"),
        ("float", "number"),
        ("long", "integer"),
        ("integer", "integer"),
        ("string", "string"),
        ("boolean", "boolean"),
        ("binary", "string"),
    ],
)
def test_mlflow_types_map_to_ours(mlflow_type, ours):
    mlmodel = {
        "flavors": {"xgboost": {"xgb_version": "2.0.3"}},
        "signature": {"inputs": json.dumps([{"type": mlflow_type, "name": "x"}])},
    }

    _, mapping = run(mlmodel)

    assert mapping.metadata["input_schema"] == [
        {"name": "x", "type": ours, "required": True}
    ]
    assert mapping.metadata["model_info"]["architecture"] == "tree_ensemble"
    assert mapping.metadata["training"]["framework_version"] == "2.0.3"


def test_mlflow_tensor_signature_is_an_array_feature():
    mlmodel = {
        "flavors": {"pytorch": {"pytorch_version": "2.1.0"}},
        "run_id": "r1",
        "signature": {
            "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", '
            '"shape": [-1, 28, 28]}}]'
        },
    }

    _, mapping = run(mlmodel)

    assert mapping.metadata["input_schema"] == [
        {
            "name": "input_0",
            "type": "array",
            "required": True,
            "description": "tensor float32, shape [-1, 28, 28]",
        }
    ]
    assert mapping.confidence["input_schema"] == 0.8
    assert "modalities" not in mapping.metadata.get("model_info", {})


def test_oip_metadata_maps_tensors_to_schemas():
    _, mapping = run(s.OIP_METADATA)

    assert mapping.metadata == {
        "model_info": {
            "name": "iris-classifier",
            "modalities": ["tabular"],
            "task": "classification",
        },
        "training": {"framework": "onnx"},
        "input_schema": [
            {
                "name": "input",
                "type": "array",
                "required": True,
                "description": "FP32 tensor, shape [-1, 4]",
            }
        ],
        "output_schema": {
            "fields": [
                {"name": "label", "type": "integer", "required": True},
                {
                    "name": "probabilities",
                    "type": "array",
                    "required": True,
                    "description": "FP32 tensor, shape [-1, 3]",
                },
            ]
        },
    }
    assert mapping.confidence["model_info.task"] == 0.5


@pytest.mark.parametrize(
    ("datatype", "ours"),
    [
        ("FP32", "number"),
        ("FP16", "number"),
        ("INT64", "integer"),
        ("UINT8", "integer"),
        ("BYTES", "string"),
        ("BOOL", "boolean"),
    ],
)
def test_oip_datatypes_map_to_ours(datatype, ours):
    oip = {
        "name": "m",
        "inputs": [{"name": "a", "datatype": datatype, "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}],
    }

    _, mapping = run(oip)

    assert mapping.metadata["input_schema"] == [
        {"name": "a", "type": ours, "required": True}
    ]
    assert mapping.metadata["output_schema"] == {"type": "number"}
    assert mapping.metadata["model_info"]["task"] == "regression"


# --- provider model objects -----------------------------------------------------------


def test_openai_model_object():
    _, mapping = run(s.OPENAI_MODEL)

    assert mapping.metadata == {
        "model_info": {
            "provider": "openai",
            "external_id": "gpt-4o-mini",
            "name": "gpt-4o-mini",
            "task": "chat",
            "capabilities": ["chat", "completion", "vision"],
            "modalities": ["text", "image"],
            "architecture": "transformer",
        }
    }
    assert mapping.confidence["model_info.provider"] == 1.0
    assert mapping.confidence["model_info.task"] == 0.8


def test_openai_embedding_model_object():
    _, mapping = run(s.OPENAI_EMBEDDING)

    info = mapping.metadata["model_info"]
    assert (info["task"], info["capabilities"]) == ("embedding", ["embedding"])


def test_anthropic_model_object():
    _, mapping = run(s.ANTHROPIC_MODEL)

    assert mapping.metadata == {
        "model_info": {
            "provider": "anthropic",
            "external_id": "claude-sonnet-4-20250514",
            "name": "Claude Sonnet 4",
            "architecture": "transformer",
            "task": "chat",
            "capabilities": ["chat", "completion", "vision"],
            "modalities": ["text", "image"],
            "context_window": 200000,
            "max_output_tokens": 64000,
        }
    }
    assert mapping.confidence["model_info.context_window"] == 0.95


def test_gemini_model_objects():
    _, chat = run(s.GEMINI_MODEL)
    _, embedding = run(s.GEMINI_EMBEDDING)

    assert chat.metadata["model_info"] == {
        "provider": "google",
        "external_id": "gemini-2.0-flash",
        "name": "Gemini 2.0 Flash",
        "context_window": 1048576,
        "max_output_tokens": 8192,
        "capabilities": ["chat", "completion"],
        "task": "chat",
        "modalities": ["text", "image"],
        "architecture": "transformer",
    }
    assert chat.metadata["description"] == "Gemini 2.0 Flash"
    assert embedding.metadata["model_info"]["task"] == "embedding"
    assert embedding.metadata["model_info"]["capabilities"] == ["embedding"]
    assert embedding.confidence["model_info.task"] == 0.9


def test_canonical_input_keeps_valid_fields_and_drops_invalid_ones():
    bad = {
        **s.CANONICAL,
        "performance": {"auc": 1.7, "f1": 0.8},
        "input_schema": [
            {"name": "tenure", "type": "integer"},
            {"name": "plan", "type": "colour"},
        ],
        "extra_key": 1,
    }

    _, mapping = run(bad)

    assert mapping.metadata["performance"] == {"f1": 0.8}
    assert mapping.metadata["input_schema"] == [
        {"name": "tenure", "type": "integer", "required": True}
    ]
    assert mapping.confidence["performance.f1"] == 1.0
    assert mapping.warnings == [
        "extra_key: not a canonical field; ignored.",
        "performance.auc: dropped (Ensure this value is less than or equal to 1.)",
        'input_schema.1: dropped ("colour" is not a valid choice.)',
    ]


def test_unknown_format_maps_nothing_and_says_so():
    _, mapping = run(s.UNKNOWN_FORMAT)

    assert mapping.metadata == {} and mapping.confidence == {}
    assert mapping.warnings == [
        "The format was not recognised: the deterministic engine found nothing."
    ]


# --- validation and confidence ------------------------------------------------------


def test_validate_partial_drops_a_provider_whose_requirements_are_missing():
    clean, warnings = validate_partial(
        {"model_info": {"provider": "huggingface", "name": "x", "context_window": 0}}
    )

    assert clean == {"model_info": {"name": "x"}}
    # Field errors first; the provider's requirements are checked once fields pass.
    assert warnings == [
        "model_info.context_window: dropped (Ensure this value is greater than or "
        "equal to 1.)",
        "model_info.provider: dropped (HuggingFace models need a repo id (owner/name).)",
    ]


def test_overall_confidence_is_the_weighted_mean():
    # task weighs 3, license 1.5, an unlisted field 1.
    assert overall_confidence(
        {"model_info.task": 0.9, "license": 0.6, "training.dataset": 0.3}
    ) == round((3 * 0.9 + 1.5 * 0.6 + 1 * 0.3) / 5.5, 3)
    assert overall_confidence({}) == 0.0


def test_llm_answer_is_combined_with_validity_and_agreement():
    _, rules = run(s.GPT2_CONFIG)
    answer = {
        "model_info": {
            "task": "text-generation",  # agrees: 0.8 * 1.2 = 0.96 (> 0.85)
            "modalities": ["text"],  # agrees: 0.5 * 1.2 = 0.6 < 0.85 -> 0.85
            "context_window": 2048,  # disagrees: rules (0.9) kept at 0.45
            "max_output_tokens": -3,  # invalid -> 0
            "name": "gpt2",  # LLM only: 0.7
        },
        "license": "mit",  # LLM only: 0.4
    }
    own = {
        "model_info.task": 0.8,
        "model_info.context_window": 0.9,
        "model_info.max_output_tokens": 0.9,
        "model_info": {"name": 0.7},
        "license": 0.4,
    }

    result = score_answer(answer, own, rules)

    assert result.metadata["model_info"]["context_window"] == 1024
    assert result.metadata["model_info"]["name"] == "gpt2"
    assert result.metadata["license"] == "mit"
    assert "max_output_tokens" not in result.metadata["model_info"]
    assert result.confidence == {
        "model_info.architecture": 0.95,
        "model_info.architecture_detail": 0.95,
        "model_info.task": 0.96,
        "model_info.modalities": 0.85,
        "model_info.capabilities": 0.6,
        "model_info.context_window": 0.45,
        "model_info.parameter_count": 0.3,
        "model_info.name": 0.7,
        "license": 0.4,
        "model_info.max_output_tokens": 0.0,
    }
    assert (
        "model_info.context_window: the LLM says 2048, the rules say 1024; kept 1024 "
        "at lower confidence — please check." in result.warnings
    )
    assert any(
        w.startswith("LLM answer: model_info.max_output_tokens: dropped")
        for w in result.warnings
    )


def test_more_confident_llm_value_wins_a_disagreement():
    _, rules = run(s.OIP_METADATA)  # task classification at 0.5

    result = score_answer(
        {"model_info": {"task": "regression"}}, {"model_info.task": 0.9}, rules
    )

    assert result.metadata["model_info"]["task"] == "regression"
    assert result.confidence["model_info.task"] == 0.45


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("I think this is a llama model.", "not JSON"),
        ("[1, 2, 3]", "not an object"),
        ('{"answer": 42}', "did not have the expected shape"),
        ("", "empty answer"),
    ],
)
def test_garbage_answers_are_named(text, problem):
    metadata, _, message = parse_answer(text)

    assert metadata is None
    assert problem in message


def test_fenced_and_bare_canonical_answers_are_read():
    fenced = '```json\n{"metadata": {"license": "mit"}, "confidence": {}}\n```'
    assert parse_answer(fenced)[0] == {"license": "mit"}
    assert parse_answer('{"license": "mit"}')[0] == {"license": "mit"}


def test_response_schema_is_derived_from_the_canonical_serializers():
    schema = canonical_json_schema()
    info = schema["properties"]["model_info"]["properties"]

    assert "text-generation" in info["task"]["enum"]
    assert info["context_window"] == {"type": "integer"}
    assert schema["properties"]["input_schema"]["items"]["required"] == ["name", "type"]
    assert response_json_schema()["required"] == ["metadata", "confidence"]


# --- quality (pure) ------------------------------------------------------------------


def test_quality_of_an_llm_needs_context_window_and_of_a_provider_model_pricing():
    _, mapping = run(s.ANTHROPIC_MODEL)

    report = quality_of(mapping.metadata)

    assert report["missing"] == ["description", "license", "performance", "pricing"]
    # 8+15+3+10+5 present of 15+8+3+5+10+15+10+5+10 applicable.
    assert report["score"] == round(100 * (15 + 8 + 3 + 10 + 5) / 81)
    assert (
        "Add pricing per 1k tokens: cost reports use it." in report["recommendations"]
    )


def test_quality_of_a_tabular_model_needs_the_input_schema():
    report = quality_of({"model_info": {"task": "regression"}})

    assert "input_schema" in report["missing"]
    assert "model_info.context_window" not in report["missing"]
    full = quality_of(
        {"model_info": {"task": "regression"}},
        extra={"input_schema": [{"name": "x", "type": "number"}]},
    )
    assert "input_schema" not in full["missing"]
    assert full["score"] > report["score"]


# --- robustness -------------------------------------------------------------------------


def test_two_hundred_random_json_values_never_break_the_pipeline():
    rng = random.Random(20240601)
    formats = set()
    for _ in range(200):
        value = s.random_json(rng)
        for payload in (value, json.dumps(value)):
            detection, mapping = run(payload)
            assert detection.format in FORMATS
            assert_valid(mapping)
            formats.add(detection.format)
    assert "unknown" in formats


def test_mutated_samples_never_break_any_mapper():
    rng = random.Random(7)
    samples = [
        s.LLAMA2_CONFIG,
        s.DISTILBERT_SST2_CONFIG,
        s.VIT_BEANS_CONFIG,
        parse_payload(s.MODEL_CARD).data,
        yaml.safe_load(s.MLMODEL),
        s.OIP_METADATA,
        s.OPENAI_MODEL,
        s.ANTHROPIC_MODEL,
        s.GEMINI_MODEL,
        s.CANONICAL,
    ]
    for sample in samples:
        for _ in range(20):
            mutated = s.mutate(rng, sample)
            for fmt in MAPPERS:
                assert_valid(map_payload(fmt, mutated, body=s.random_string(rng, 200)))


def test_llm_scoring_never_breaks_on_random_answers():
    rng = random.Random(11)
    _, rules = run(s.LLAMA2_CONFIG)
    for _ in range(100):
        answer = s.mutate(rng, s.CANONICAL, rate=0.5)
        result = score_answer(answer, s.random_json(rng), rules)
        assert validate_metadata(result.metadata) == result.metadata
        assert all(0 <= c <= 1 for c in result.confidence.values())
