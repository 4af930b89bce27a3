"""Samples in the shape of the public metadata formats (written for these tests), a
random JSON generator for robustness tests, and OpenAI chat-completion bodies."""

from __future__ import annotations

import json
import random
from typing import Any

LLAMA2_CONFIG = {
    "_name_or_path": "meta-llama/Llama-2-7b-hf",
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

MISTRAL_CONFIG = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

BERT_CONFIG = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}

DISTILBERT_SST2_CONFIG = {
    "activation": "gelu",
    "architectures": ["DistilBertForSequenceClassification"],
    "attention_dropout": 0.1,
    "dim": 768,
    "dropout": 0.1,
    "finetuning_task": "sst-2",
    "hidden_dim": 3072,
    "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
    "initializer_range": 0.02,
    "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
    "max_position_embeddings": 512,
    "model_type": "distilbert",
    "n_heads": 12,
    "n_layers": 6,
    "output_past": True,
    "pad_token_id": 0,
    "qa_dropout": 0.1,
    "seq_classif_dropout": 0.2,
    "sinusoidal_pos_embds": False,
    "tie_weights_": True,
    "vocab_size": 30522,
}

GPT2_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}

VIT_BEANS_CONFIG = {
    "architectures": ["ViTForImageClassification"],
    "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 768,
    "id2label": {"0": "angular_leaf_spot", "1": "bean_rust", "2": "healthy"},
    "image_size": 224,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "label2id": {"angular_leaf_spot": "0", "bean_rust": "1", "healthy": "2"},
    "layer_norm_eps": 1e-12,
    "model_type": "vit",
    "num_attention_heads": 12,
    "num_channels": 3,
    "num_hidden_layers": 12,
    "patch_size": 16,
    "qkv_bias": True,
    "torch_dtype": "float32",
    "transformers_version": "4.26.0",
}

MODEL_CARD = """---
language:
- en
license: apache-2.0
library_name: transformers
tags:
- generated_from_trainer
- distilbert
datasets:
- imdb
metrics:
- accuracy
base_model: distilbert-base-uncased
pipeline_tag: text-classification
model-index:
- name: distilbert-imdb-sentiment
  results:
  - task:
      type: text-classification
      name: Text Classification
    dataset:
      name: imdb
      type: imdb
      split: test
    metrics:
    - type: accuracy
      value: 93.12
      name: Accuracy
    - type: f1
      value: 0.9309
      name: F1
  - task:
      type: text-classification
    dataset:
      name: sst2
      type: glue
    metrics:
    - type: accuracy
      value: 0.88
    - type: matthews_correlation
      value: 0.71
---

# distilbert-imdb-sentiment

<!-- This model card has been generated automatically. -->

This model is a fine-tuned version of distilbert-base-uncased on the imdb dataset.
It classifies movie reviews as positive or negative.

## Training procedure
"""

MLMODEL = """artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.10.12
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.3.2
mlflow_version: 2.9.2
model_size_bytes: 1873
model_uuid: 3c8b6e1f0d2a4a5c9f1e2d3c4b5a6978
run_id: 5e4f2b7c9d1a4e3f8b6c0a2d4e6f8a1b
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}, {"type":
    "double", "name": "sepal width (cm)", "required": true}, {"type": "double", "name":
    "petal length (cm)", "required": true}, {"type": "double", "name": "petal width
    (cm)", "required": true}, {"type": "string", "name": "site", "required": false},
    {"type": "binary", "name": "photo", "required": false}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
utc_time_created: '2024-01-15 10:21:45.123456'
"""

OIP_METADATA = {
    "name": "iris-classifier",
    "versions": ["1"],
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ],
}

OPENAI_MODEL = {
    "id": "gpt-4o-mini",
    "object": "model",
    "created": 1721172741,
    "owned_by": "system",
}
OPENAI_EMBEDDING = {
    "id": "text-embedding-3-small",
    "object": "model",
    "created": 1705948997,
    "owned_by": "system",
}

ANTHROPIC_MODEL = {
    "type": "model",
    "id": "claude-sonnet-4-20250514",
    "display_name": "Claude Sonnet 4",
    "created_at": "2025-05-22T00:00:00Z",
    "max_input_tokens": 200000,
    "max_tokens": 64000,
    "capabilities": {
        "batch": {"supported": True},
        "image_input": {"supported": True},
        "pdf_input": {"supported": True},
        "structured_outputs": {"supported": False},
    },
}

GEMINI_MODEL = {
    "name": "models/gemini-2.0-flash",
    "version": "2.0",
    "displayName": "Gemini 2.0 Flash",
    "description": "Gemini 2.0 Flash",
    "inputTokenLimit": 1048576,
    "outputTokenLimit": 8192,
    "supportedGenerationMethods": [
        "generateContent",
        "countTokens",
        "createCachedContent",
        "batchGenerateContent",
    ],
    "temperature": 1,
    "topP": 0.95,
    "topK": 40,
    "maxTemperature": 2,
}
GEMINI_EMBEDDING = {
    "name": "models/text-embedding-004",
    "version": "004",
    "displayName": "Text Embedding 004",
    "description": "Obtain a distributed representation of a text.",
    "inputTokenLimit": 2048,
    "outputTokenLimit": 1,
    "supportedGenerationMethods": ["embedContent"],
}

CANONICAL = {
    "model_info": {"name": "churn", "task": "classification", "architecture": "linear"},
    "input_schema": [
        {"name": "tenure", "type": "integer"},
        {"name": "plan", "type": "categorical"},
    ],
    "performance": {"auc": 0.91},
    "license": "proprietary",
}

# A catalogue entry of some in-house registry: no mapper knows it.
UNKNOWN_FORMAT = {
    "modelName": "fraud-scorer",
    "kind": "gradient boosting",
    "features": [{"col": "amount", "dtype": "float"}, {"col": "country"}],
    "auc_test": 0.934,
    "owner_team": "risk",
}


def completion(content: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """An OpenAI chat.completion body answering `content`."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 812, "completion_tokens": 120, "total_tokens": 932},
    }


def structured(metadata: dict[str, Any], confidence: dict[str, float]) -> str:
    return json.dumps({"metadata": metadata, "confidence": confidence, "notes": []})


_ALPHABET = "abcxyz_-. 0123456789/:\"'\\{}[]\n\t\x00é漢\U0001f600"


def random_string(rng: random.Random, max_len: int = 12) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, max_len)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Nested dicts/lists/strings/numbers/bools/null; keys sometimes borrowed from the
    real formats so that detection and mappers get exercised."""
    keys = [
        "model_type",
        "architectures",
        "hidden_size",
        "vocab_size",
        "object",
        "id",
        "type",
        "name",
        "flavors",
        "signature",
        "inputs",
        "outputs",
        "datatype",
        "shape",
        "license",
        "pipeline_tag",
        "model-index",
        "model_info",
        "input_schema",
        "max_position_embeddings",
        "id2label",
        "display_name",
        "max_input_tokens",
        "supportedGenerationMethods",
    ]
    choice = rng.random()
    if depth > 4 or choice < 0.35:
        return rng.choice(
            [
                None,
                True,
                False,
                rng.randint(-(10**12), 10**12),
                rng.uniform(-1e6, 1e6),
                random_string(rng),
                "model",
                "models/x",
                -1,
                0,
                1e308,
            ]
        )
    if choice < 0.6:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        (rng.choice(keys) if rng.random() < 0.6 else random_string(rng)): random_json(
            rng, depth + 1
        )
        for _ in range(rng.randint(0, 6))
    }


def mutate(rng: random.Random, value: Any, rate: float = 0.3) -> Any:
    """The sample with some values replaced by random JSON and some keys dropped."""
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            roll = rng.random()
            if roll < rate / 3:
                continue
            out[key] = random_json(rng, 3) if roll < rate else mutate(rng, sub, rate)
        return out
    if isinstance(value, list):
        return [mutate(rng, v, rate) for v in value if rng.random() > rate / 3]
    return random_json(rng, 3) if rng.random() < rate else value
