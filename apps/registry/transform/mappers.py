"""One pure function per known format: (canonical metadata, {field path: confidence},
warnings, suggestions). No ORM; every value read from the input is type-checked, so
any JSON goes in and valid canonical metadata comes out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from apps.registry.metadata import TASKS
from apps.registry.transform.canonical import field_paths, set_path, validate_partial


class Mapping(NamedTuple):
    metadata: dict[str, Any]
    confidence: dict[str, float]
    warnings: list[str]
    suggestions: list[str]


class _Builder:
    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}
        self.confidence: dict[str, float] = {}
        self.warnings: list[str] = []
        self.suggestions: list[str] = []

    def put(self, path: str, value: Any, confidence: float) -> None:
        if value is None or value == "" or value == [] or value == {}:
            return
        set_path(self.metadata, path, value)
        self.confidence[path] = round(confidence, 2)

    def has(self, path: str) -> bool:
        return path in self.confidence

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def suggest(self, message: str) -> None:
        if message not in self.suggestions:
            self.suggestions.append(message)

    def result(self) -> Mapping:
        clean, dropped = validate_partial(self.metadata)
        clean = {k: v for k, v in clean.items() if v not in ({}, [], "")}
        confidence = {p: self.confidence.get(p, 0.5) for p in field_paths(clean)}
        return Mapping(clean, confidence, self.warnings + dropped, self.suggestions)


# --- safe readers --------------------------------------------------------------------


def _str(value: Any, limit: int = 300) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def _int(value: Any) -> int | None:
    """A positive int (not a bool); integral floats count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%"))
        except ValueError:
            return None
    return None


def _strs(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(keys: Iterable[str], *sources: dict[str, Any]) -> tuple[str, int] | None:
    for source in sources:
        for key in keys:
            number = _int(source.get(key))
            if number is not None:
                return key, number
    return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- HuggingFace -------------------------------------------------------------------

TRANSFORMER_TYPES = {
    "albert",
    "bart",
    "beit",
    "bert",
    "big_bird",
    "bigbird_pegasus",
    "blip",
    "bloom",
    "camembert",
    "clip",
    "codegen",
    "cohere",
    "deberta",
    "deberta-v2",
    "deepseek_v2",
    "deepseek_v3",
    "deit",
    "distilbert",
    "electra",
    "falcon",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "gpt2",
    "gpt_bigcode",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "granite",
    "idefics3",
    "led",
    "llama",
    "llava",
    "longformer",
    "longt5",
    "m2m_100",
    "marian",
    "mbart",
    "mistral",
    "mixtral",
    "mllama",
    "modernbert",
    "mpnet",
    "mpt",
    "mt5",
    "nllb-moe",
    "olmo",
    "olmo2",
    "opt",
    "paligemma",
    "pegasus",
    "phi",
    "phi3",
    "qwen2",
    "qwen2_moe",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3",
    "qwen3_moe",
    "roberta",
    "seamless_m4t",
    "siglip",
    "speech_to_text",
    "stablelm",
    "starcoder2",
    "swin",
    "swinv2",
    "t5",
    "umt5",
    "vit",
    "wav2vec2",
    "hubert",
    "whisper",
    "xlm-roberta",
    "xlnet",
    "yolos",
    "detr",
}
CNN_TYPES = {
    "resnet",
    "convnext",
    "convnextv2",
    "efficientnet",
    "mobilenet_v1",
    "mobilenet_v2",
    "regnet",
    "bit",
    "van",
}
RNN_TYPES = {"rwkv", "xlstm"}
GATED_MLP_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "olmo",
    "olmo2",
    "cohere",
    "granite",
    "deepseek_v2",
    "deepseek_v3",
}
ABSOLUTE_POSITION_TYPES = {
    "gpt2",
    "bert",
    "roberta",
    "distilbert",
    "gpt_neo",
    "opt",
    "bart",
    "xlm-roberta",
    "electra",
    "camembert",
    "albert",
}
SUMMARIZATION_TYPES = {"bart", "pegasus", "led", "bigbird_pegasus"}
TRANSLATION_TYPES = {"marian", "m2m_100", "fsmt", "nllb-moe"}
SPEECH_TYPES = {"whisper", "speech_to_text", "seamless_m4t"}
AUDIO_TYPES = SPEECH_TYPES | {"wav2vec2", "hubert", "wavlm"}
# (architecture class suffix, task, confidence), most specific first.
TASK_SUFFIXES: list[tuple[str, str, float]] = [
    ("ForCausalLM", "text-generation", 0.9),
    ("WithLMHeadModel", "text-generation", 0.6),
    ("LMHeadModel", "text-generation", 0.85),
    ("ForSequenceClassification", "text-classification", 0.9),
    ("ForTokenClassification", "token-classification", 0.9),
    ("ForQuestionAnswering", "question-answering", 0.9),
    ("ForMaskedLM", "fill-mask", 0.9),
    ("ForPreTraining", "fill-mask", 0.6),
    ("ForImageClassification", "image-classification", 0.9),
    ("ForObjectDetection", "object-detection", 0.9),
    ("ForCTC", "speech-recognition", 0.85),
    ("ForSpeechSeq2Seq", "speech-recognition", 0.85),
    ("MTModel", "translation", 0.8),  # MarianMTModel
]
CONTEXT_KEYS: list[tuple[str, float]] = [
    ("max_position_embeddings", 0.9),
    ("n_positions", 0.9),
    ("n_ctx", 0.85),
    ("max_seq_len", 0.85),
    ("seq_length", 0.85),
    ("max_sequence_length", 0.85),
    ("seq_len", 0.8),
    ("model_max_length", 0.8),
]
PLACEHOLDER_LABEL = re.compile(r"^LABEL_\d+$")
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
PARAMETER_WARNING = (
    "model_info.parameter_count is an estimate from hidden_size, num_hidden_layers, "
    "vocab_size and intermediate_size (biases are not counted); replace it with the "
    "real count when known."
)


def _hf_task(arch: str, model_type: str, multimodal: bool) -> tuple[str, float] | None:
    for suffix, task, confidence in TASK_SUFFIXES:
        if arch.endswith(suffix):
            return task, confidence
    if arch.endswith("ForConditionalGeneration"):
        if model_type in SPEECH_TYPES:
            return "speech-recognition", 0.85
        if model_type in TRANSLATION_TYPES:
            return "translation", 0.7
        if model_type in SUMMARIZATION_TYPES:
            return "summarization", 0.6
        return "text-generation", 0.7 if multimodal else 0.6
    if arch.endswith("Model") and arch[:-5] and "For" not in arch:
        return "embedding", 0.5
    return None


def _labels(value: Any) -> list[str]:
    """Labels from id2label ({"0": "NEGATIVE", ...}) in id order; [] for placeholders."""
    mapping = _dict(value)
    pairs = []
    for key, label in mapping.items():
        index = _num(key)
        if index is None or not isinstance(label, str):
            return []
        pairs.append((index, label))
    labels = [label for _, label in sorted(pairs)]
    if not labels or all(PLACEHOLDER_LABEL.match(label) for label in labels):
        return []
    return labels


def _round3(number: int) -> int:
    return int(float(f"{number:.3g}"))


def estimate_parameters(config: dict[str, Any], model_type: str) -> int | None:
    """A transformer's parameter count from its shape: embeddings, attention (with
    grouped KV heads), MLP (gated or not, times experts), norms, untied LM head.
    Three significant figures: it is an estimate."""
    h = _first(("hidden_size", "n_embd", "d_model", "dim"), config)
    layers = _first(("num_hidden_layers", "n_layer", "num_layers", "n_layers"), config)
    vocab = _first(("vocab_size",), config)
    if not (h and layers and vocab):
        return None
    hidden, n_layers, n_vocab = h[1], layers[1], vocab[1]
    decoder = _int(config.get("decoder_layers"))
    encoder = _int(config.get("encoder_layers"))
    if encoder and decoder:
        n_layers = encoder + decoder
    if hidden > 1_000_000 or n_layers > 10_000 or n_vocab > 100_000_000:
        return None
    inner_found = _first(
        (
            "intermediate_size",
            "n_inner",
            "ffn_dim",
            "d_ff",
            "encoder_ffn_dim",
            "hidden_dim",
        ),
        config,
    )
    inner = inner_found[1] if inner_found else 4 * hidden
    heads_found = _first(
        ("num_attention_heads", "n_head", "num_heads", "n_heads"), config
    )
    heads = heads_found[1] if heads_found else 1
    head_dim = _int(config.get("head_dim")) or max(1, hidden // heads)
    kv_heads = _int(config.get("num_key_value_heads")) or heads
    experts = (
        _int(config.get("num_local_experts"))
        or _int(config.get("num_experts"))
        or _int(config.get("n_routed_experts"))
        or 1
    )
    gated = model_type in GATED_MLP_TYPES or config.get("hidden_act") in (
        "silu",
        "swiglu",
    )
    positions = _int(config.get("max_position_embeddings")) or _int(
        config.get("n_positions")
    )
    dims = (inner, heads, head_dim, kv_heads, experts, positions or 1)
    if any(d > 10_000_000 for d in dims):
        return None  # not a real model's shape
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = (3 if gated else 2) * hidden * inner * experts
    router = hidden * experts if experts > 1 else 0
    per_layer = attention + mlp + router + 2 * hidden
    total = n_vocab * hidden + n_layers * per_layer + hidden
    if decoder and encoder:
        total += decoder * attention  # cross-attention
    absolute = config.get("position_embedding_type") == "absolute"
    if positions and (absolute or model_type in ABSOLUTE_POSITION_TYPES):
        total += positions * hidden
    if config.get("tie_word_embeddings") is False:
        total += n_vocab * hidden
    return _round3(total) if 0 < total < 10**15 else None


def map_huggingface_config(data: dict[str, Any]) -> Mapping:
    """transformers config.json -> canonical."""
    b = _Builder()
    text_config = _dict(data.get("text_config"))
    vision_config = _dict(data.get("vision_config"))
    model_type = (_str(data.get("model_type"), 100) or "").lower()
    archs = _strs(data.get("architectures"))
    arch = archs[0] if archs else ""
    dtype = _str(data.get("torch_dtype"), 30) or _str(data.get("dtype"), 30)
    multimodal = bool(vision_config) and bool(text_config or data.get("vocab_size"))

    # architecture
    arch_lower = arch.lower()
    if model_type in CNN_TYPES or any(
        n in arch_lower
        for n in ("resnet", "convnext", "efficientnet", "mobilenet", "regnet")
    ):
        b.put("model_info.architecture", "cnn", 0.9)
    elif model_type in RNN_TYPES:
        b.put("model_info.architecture", "rnn", 0.8)
    elif model_type.startswith("mamba"):
        b.put("model_info.architecture", "other", 0.7)
    elif model_type in TRANSFORMER_TYPES:
        b.put("model_info.architecture", "transformer", 0.95)
    elif any(
        k in data or k in text_config
        for k in ("num_attention_heads", "n_head", "encoder_attention_heads")
    ):
        b.put("model_info.architecture", "transformer", 0.8)
    else:
        b.suggest(
            "Set model_info.architecture: model_type names no family ModelHub knows."
        )
    detail = arch or model_type
    if detail:
        b.put(
            "model_info.architecture_detail",
            f"{detail} ({dtype})" if dtype else detail,
            0.95,
        )

    # task and labels
    found = _hf_task(arch, model_type, multimodal) if arch else None
    if found:
        b.put("model_info.task", found[0], found[1])
        if found[1] < 0.8:
            b.warn(
                f"model_info.task '{found[0]}' is inferred from {arch}, a head that "
                "serves more than one task."
            )
    else:
        b.suggest(
            "Set model_info.task: the architectures field names no head ModelHub knows."
        )
    task = found[0] if found else ""
    labels = _labels(data.get("id2label"))
    if labels and task.endswith("classification"):
        b.put("output_schema", {"type": "categorical", "labels": labels}, 0.9)

    # modalities
    modalities: list[str] = []
    image = bool(vision_config) or any(
        k in data for k in ("image_size", "num_channels", "patch_size")
    )
    audio = model_type in AUDIO_TYPES or "num_mel_bins" in data
    text = bool(text_config) or ("vocab_size" in data and not image and not audio)
    text = text or task in ("speech-recognition",) or multimodal
    if text:
        modalities.append("text")
    if image:
        modalities.append("image")
    if audio:
        modalities.append("audio")
    b.put("model_info.modalities", modalities, 0.85)
    if task.endswith("classification"):
        b.put("model_info.capabilities", ["classification"], 0.8)
    elif task == "text-generation":
        b.put("model_info.capabilities", ["completion"], 0.6)
    elif task == "embedding":
        b.put("model_info.capabilities", ["embedding"], 0.5)

    # context window
    if "text" in modalities and not audio:
        context = None
        for key, confidence in CONTEXT_KEYS:
            number = _int(data.get(key)) or _int(text_config.get(key))
            if number:
                context = (key, number, confidence)
                break
        window = _int(data.get("sliding_window")) or _int(
            text_config.get("sliding_window")
        )
        if context:
            key, number, confidence = context
            if window and window < number:
                confidence = 0.8
                b.warn(
                    f"Attention is windowed to {window} tokens (sliding_window); "
                    f"the context window is {key}={number}."
                )
            b.put("model_info.context_window", number, confidence)
        elif window:
            b.put("model_info.context_window", window, 0.4)
            b.warn(
                "model_info.context_window comes from sliding_window only; the real "
                "context may be longer."
            )

    # size
    source = {**data, **text_config} if text_config else data
    estimate = estimate_parameters(source, model_type)
    if estimate:
        b.put("model_info.parameter_count", estimate, 0.3)
        b.warn(PARAMETER_WARNING)

    # identity and training
    name = _str(data.get("_name_or_path"), 300)
    if name and not name.startswith(("/", ".", "~")):
        b.put("model_info.name", name, 0.7)
        if REPO_ID.match(name):
            b.put("model_info.repo_id", name, 0.7)
    version = _str(data.get("transformers_version"), 50)
    if version:
        b.put("training.framework", "transformers", 0.9)
        b.put("training.framework_version", version, 0.95)
    b.suggest(
        "config.json carries no license: add it (the model card's `license` has it)."
    )
    b.suggest("Add evaluation metrics (performance) and the training dataset.")
    return b.result()


PIPELINE_TASKS: dict[str, tuple[str, float]] = {
    **{t: (t, 0.95) for t in TASKS if t not in ("other",)},
    "automatic-speech-recognition": ("speech-recognition", 0.95),
    "text2text-generation": ("text-generation", 0.7),
    "feature-extraction": ("embedding", 0.85),
    "sentence-similarity": ("embedding", 0.85),
    "zero-shot-classification": ("text-classification", 0.7),
    "conversational": ("chat", 0.9),
    "image-text-to-text": ("text-generation", 0.8),
    "visual-question-answering": ("question-answering", 0.7),
    "document-question-answering": ("question-answering", 0.7),
    "table-question-answering": ("question-answering", 0.8),
    "tabular-classification": ("classification", 0.9),
    "tabular-regression": ("regression", 0.9),
    "image-segmentation": ("vision", 0.6),
    "zero-shot-image-classification": ("image-classification", 0.7),
    "zero-shot-object-detection": ("object-detection", 0.7),
    "audio-classification": ("audio", 0.7),
    "text-to-speech": ("audio", 0.7),
    "text-to-audio": ("audio", 0.7),
    "text-to-image": ("other", 0.6),
}
PIPELINE_MODALITIES: dict[str, list[str]] = {
    "image-classification": ["image"],
    "object-detection": ["image"],
    "image-segmentation": ["image"],
    "zero-shot-image-classification": ["text", "image"],
    "zero-shot-object-detection": ["text", "image"],
    "image-text-to-text": ["text", "image"],
    "visual-question-answering": ["text", "image"],
    "document-question-answering": ["text", "image"],
    "automatic-speech-recognition": ["audio"],
    "audio-classification": ["audio"],
    "text-to-speech": ["text", "audio"],
    "text-to-audio": ["text", "audio"],
    "text-to-image": ["text", "image"],
    "tabular-classification": ["tabular"],
    "tabular-regression": ["tabular"],
}
METRIC_NAMES = {
    "accuracy": "accuracy",
    "acc": "accuracy",
    "f1": "f1",
    "f1_score": "f1",
    "roc_auc": "auc",
    "auc": "auc",
    "precision": "precision",
    "recall": "recall",
    "mae": "mae",
    "mean_absolute_error": "mae",
    "rmse": "rmse",
    "root_mean_squared_error": "rmse",
    "r2": "r2",
    "r_squared": "r2",
}
UNIT_METRICS = {"accuracy", "f1", "auc", "precision", "recall"}


def _card_description(body: str) -> str | None:
    """The first paragraph of prose in the card's markdown (no headings, HTML,
    images or tables)."""
    body = re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL)
    for paragraph in re.split(r"\n\s*\n", body):
        lines = [
            line.strip()
            for line in paragraph.strip().splitlines()
            if line.strip()
            and not line.lstrip().startswith(("#", "<", "!", "|", "```", "---"))
        ]
        text = " ".join(lines).strip()
        if len(text) >= 20:
            return text[:5000]
    return None


def _card_metrics(b: _Builder, model_index: Any) -> None:
    entries = model_index if isinstance(model_index, list) else []
    results = [
        r
        for entry in entries
        if isinstance(entry, dict)
        for r in (entry.get("results") or [])
        if isinstance(r, dict)
    ]
    if not results:
        return
    datasets = []
    for result in results:
        dataset = _dict(result.get("dataset"))
        datasets.append(_str(dataset.get("name")) or _str(dataset.get("type")) or "?")
    if len(results) > 1:
        b.warn(
            f"model-index has {len(results)} results; performance takes each metric "
            f"from the first result that reports it (first dataset: '{datasets[0]}')."
        )
    if not b.has("model_info.task"):
        task_type = _str(_dict(results[0].get("task")).get("type"), 100)
        mapped = PIPELINE_TASKS.get(task_type or "")
        if mapped:
            b.put("model_info.task", mapped[0], 0.8)
    extra: dict[str, float] = {}
    for result in results:
        for metric in result.get("metrics") or []:
            if not isinstance(metric, dict):
                continue
            kind = (_str(metric.get("type"), 100) or "").lower()
            value = _num(metric.get("value"))
            if not kind or value is None:
                continue
            name = METRIC_NAMES.get(kind)
            if name is None:
                if kind not in extra:
                    extra[kind] = value
                continue
            path = f"performance.{name}"
            if b.has(path):
                continue
            confidence = 0.9
            if name in UNIT_METRICS and 1 < value <= 100:
                value, confidence = value / 100, 0.7
                b.warn(f"{path} was reported in percent; stored as {value:g}.")
            b.put(path, value, confidence)
    if extra:
        b.put("performance.extra", extra, 0.85)


def map_huggingface_model_card(data: dict[str, Any], body: str = "") -> Mapping:
    """The YAML front matter of a HuggingFace README.md (plus its first paragraph)."""
    b = _Builder()
    licenses = _strs(data.get("license"))
    if licenses:
        license_name = licenses[0]
        confidence = 0.95
        if license_name == "other" and _str(data.get("license_name")):
            license_name, confidence = str(_str(data.get("license_name"))), 0.85
        if len(licenses) > 1:
            b.warn(f"The card lists {len(licenses)} licenses; the first was kept.")
            confidence = 0.7
        b.put("license", license_name[:200], confidence)
    else:
        b.suggest("Add a license: the card declares none.")

    pipeline = _str(data.get("pipeline_tag"), 100)
    if pipeline:
        mapped = PIPELINE_TASKS.get(pipeline)
        if mapped:
            b.put("model_info.task", mapped[0], mapped[1])
        else:
            b.put("model_info.task", "other", 0.4)
            b.warn(f"pipeline_tag '{pipeline}' has no canonical task; 'other' was set.")
    modalities = PIPELINE_MODALITIES.get(pipeline or "")
    if modalities:
        b.put("model_info.modalities", modalities, 0.85)
    elif pipeline or data.get("language"):
        b.put("model_info.modalities", ["text"], 0.75)

    tags = [t.lower() for t in _strs(data.get("tags"))]
    library = (_str(data.get("library_name"), 100) or "").lower()
    family = next((t for t in tags if t in TRANSFORMER_TYPES), None)
    if family:
        b.put("model_info.architecture", "transformer", 0.85)
        b.put("model_info.architecture_detail", family, 0.6)
    elif library == "transformers" or "transformers" in tags:
        b.put("model_info.architecture", "transformer", 0.6)
    if library:
        b.put("training.framework", library[:100], 0.85)

    datasets = _strs(data.get("datasets"))
    if datasets:
        b.put("training.dataset", ", ".join(datasets)[:500], 0.9)
    else:
        b.suggest("Name the training datasets (`datasets` in the card).")

    model_index = data.get("model-index")
    first = model_index[0] if isinstance(model_index, list) and model_index else {}
    name = _str(_dict(first).get("name"))
    if name:
        b.put("model_info.name", name, 0.9)
    _card_metrics(b, model_index)
    if not model_index:
        b.suggest("Add evaluation results (`model-index`) to fill in performance.")

    bases = _strs(data.get("base_model"))
    description = _card_description(body)
    if description:
        b.put("description", description, 0.7)
    elif bases:
        b.put("description", f"Fine-tuned from {', '.join(bases)}.", 0.6)
    for base in bases:
        b.suggest(
            f"base_model '{base[:200]}': record it as the version's parent if it is "
            "registered here."
        )
    return b.result()


# --- providers' model objects ------------------------------------------------------


def map_openai_model(data: dict[str, Any]) -> Mapping:
    """GET /v1/models/{id}: only an id, so capabilities are read from the id."""
    b = _Builder()
    model_id = _str(data.get("id")) or ""
    b.put("model_info.provider", "openai", 1.0)
    b.put("model_info.external_id", model_id, 1.0)
    b.put("model_info.name", model_id, 0.9)
    base = model_id.lower()
    if base.startswith("ft:"):
        base = base[3:].split(":", 1)[0]
        b.suggest(f"{model_id} is a fine-tune of {base}: set its parent version.")
    if "embedding" in base:
        b.put("model_info.task", "embedding", 0.85)
        b.put("model_info.capabilities", ["embedding"], 0.8)
        b.put("model_info.modalities", ["text"], 0.8)
    elif base.startswith("whisper") or "transcribe" in base:
        b.put("model_info.task", "speech-recognition", 0.85)
        b.put("model_info.capabilities", ["audio"], 0.8)
        b.put("model_info.modalities", ["audio"], 0.8)
    elif base.startswith("tts") or base.endswith("-tts"):
        b.put("model_info.task", "audio", 0.8)
        b.put("model_info.capabilities", ["audio"], 0.8)
        b.put("model_info.modalities", ["text", "audio"], 0.6)
    elif base.startswith(("dall-e", "gpt-image")):
        b.put("model_info.task", "other", 0.6)
        b.put("model_info.capabilities", ["vision"], 0.6)
        b.put("model_info.modalities", ["text", "image"], 0.6)
    elif "moderation" in base:
        b.put("model_info.task", "text-classification", 0.8)
        b.put("model_info.capabilities", ["classification"], 0.8)
        b.put("model_info.modalities", ["text"], 0.7)
    elif base.startswith(("gpt-", "o1", "o3", "o4", "chatgpt")):
        b.put("model_info.task", "chat", 0.8)
        vision = (
            "vision" in base or "4o" in base or base.startswith(("gpt-4.1", "gpt-5"))
        )
        capabilities = ["chat", "completion"] + (["vision"] if vision else [])
        b.put("model_info.capabilities", capabilities, 0.7)
        b.put("model_info.modalities", ["text", "image"] if vision else ["text"], 0.6)
    elif base.startswith(("davinci", "babbage")):
        b.put("model_info.task", "completion", 0.7)
        b.put("model_info.capabilities", ["completion"], 0.7)
        b.put("model_info.modalities", ["text"], 0.8)
    else:
        b.suggest("Set model_info.task: the id does not say what the model does.")
    if not base.startswith(("dall-e", "gpt-image")):
        b.put("model_info.architecture", "transformer", 0.8)
    b.suggest(
        "OpenAI's model object has no context window, output limit or pricing: "
        "add them from the model's documentation."
    )
    return b.result()


ANTHROPIC_CAPABILITIES = {
    "image_input": "vision",
    "vision": "vision",
    "tool_use": "function_calling",
    "tools": "function_calling",
    "function_calling": "function_calling",
    "structured_outputs": "json_mode",
    "json_mode": "json_mode",
    "streaming": "streaming",
}


def _supported(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("supported") is True
    return value is True


def map_anthropic_model(data: dict[str, Any]) -> Mapping:
    """GET /v1/models/{id} of Anthropic's API."""
    b = _Builder()
    model_id = _str(data.get("id")) or ""
    b.put("model_info.provider", "anthropic", 1.0)
    b.put("model_info.external_id", model_id, 1.0)
    display = _str(data.get("display_name"))
    b.put("model_info.name", display or model_id, 0.95 if display else 0.9)
    b.put("model_info.architecture", "transformer", 0.9)
    b.put("model_info.task", "chat", 0.9)
    capabilities = ["chat", "completion"]
    raw = data.get("capabilities")
    if isinstance(raw, dict):
        names = [k for k, v in raw.items() if _supported(v)]
    else:
        names = [n.lower() for n in _strs(raw)]
    capabilities += [
        ANTHROPIC_CAPABILITIES[n] for n in names if n in ANTHROPIC_CAPABILITIES
    ]
    capabilities = _unique(capabilities)
    b.put("model_info.capabilities", capabilities, 0.9 if raw else 0.8)
    modalities = ["text", "image"] if "vision" in capabilities else ["text"]
    b.put("model_info.modalities", modalities, 0.9 if raw else 0.7)
    context = _int(data.get("max_input_tokens"))
    if context:
        b.put("model_info.context_window", context, 0.95)
    output = _int(data.get("max_tokens")) or _int(data.get("max_output_tokens"))
    if output:
        b.put("model_info.max_output_tokens", output, 0.95)
    if not context:
        b.suggest("Add the context window (max_input_tokens) from the model's page.")
    b.suggest("Add pricing from the provider's price list.")
    return b.result()


EMBED_METHODS = {"embedContent", "batchEmbedContents", "embedText", "batchEmbedText"}
TUNE_METHODS = {"createTunedModel", "createTunedTextModel"}


def map_google_model(data: dict[str, Any]) -> Mapping:
    """A Gemini API model object (`models/...`), camelCase (REST) or snake_case (SDK)."""
    b = _Builder()
    name = _str(data.get("name")) or ""
    external_id = name.removeprefix("models/")
    b.put("model_info.provider", "google", 1.0)
    b.put("model_info.external_id", external_id, 0.95)
    display = _str(data.get("displayName")) or _str(data.get("display_name"))
    b.put("model_info.name", display or external_id, 0.95 if display else 0.8)
    description = _str(data.get("description"), 5000)
    if description:
        b.put("description", description, 0.9)
    context = _int(data.get("inputTokenLimit")) or _int(data.get("input_token_limit"))
    if context:
        b.put("model_info.context_window", context, 0.95)
    output = _int(data.get("outputTokenLimit")) or _int(data.get("output_token_limit"))
    if output:
        b.put("model_info.max_output_tokens", output, 0.95)
    methods = set(
        _strs(data.get("supportedGenerationMethods"))
        + _strs(data.get("supported_actions"))
    )
    generates = bool(methods & {"generateContent", "generateText", "generateMessage"})
    capabilities: list[str] = []
    if generates:
        capabilities += ["chat", "completion"]
    if "streamGenerateContent" in methods:
        capabilities.append("streaming")
    if methods & EMBED_METHODS:
        capabilities.append("embedding")
    if methods & TUNE_METHODS:
        capabilities.append("fine_tuning")
    b.put("model_info.capabilities", capabilities, 0.9)
    lowered = external_id.lower()
    if methods & EMBED_METHODS and not generates:
        b.put("model_info.task", "embedding", 0.9)
        b.put("model_info.modalities", ["text"], 0.8)
    elif generates:
        b.put("model_info.task", "chat", 0.85)
        if "gemini" in lowered:
            b.put("model_info.modalities", ["text", "image"], 0.6)
        else:
            b.put("model_info.modalities", ["text"], 0.7)
    else:
        b.suggest("Set model_info.task: no generation or embedding method is listed.")
    if any(f in lowered for f in ("gemini", "gemma", "embedding", "palm", "bison")):
        b.put("model_info.architecture", "transformer", 0.85)
    b.suggest("Add pricing from the provider's price list.")
    return b.result()


# --- MLflow ------------------------------------------------------------------------

MLFLOW_TYPES = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "binary": "string",
    "datetime": "string",
    "array": "array",
    "object": "object",
    "map": "object",
    "tensor": "array",
}
FLAVOR_FRAMEWORKS = {
    "sklearn": "scikit-learn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "pytorch": "pytorch",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "onnx": "onnx",
    "transformers": "transformers",
    "spark": "spark-ml",
    "statsmodels": "statsmodels",
    "prophet": "prophet",
    "h2o": "h2o",
    "sentence_transformers": "sentence-transformers",
}
TREE_FLAVORS = {"xgboost", "lightgbm", "catboost"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _signature_columns(b: _Builder, raw: Any, side: str) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            b.warn(f"signature.{side} is not valid JSON; it was ignored.")
            return []
    if not isinstance(raw, list):
        return []
    features: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, column in enumerate(raw):
        if not isinstance(column, dict):
            continue
        kind = _str(column.get("type"), 50) or ""
        mapped = MLFLOW_TYPES.get(kind)
        if mapped is None:
            b.warn(
                f"signature.{side}[{index}]: type '{kind[:50]}' is not known; skipped."
            )
            continue
        name = _str(column.get("name"), 200) or f"{side[:-1]}_{index}"
        if name in seen:
            b.warn(f"signature.{side}: column '{name}' appears twice; kept once.")
            continue
        seen.add(name)
        feature: dict[str, Any] = {"name": name, "type": mapped}
        feature["required"] = column.get("required") is not False
        if kind == "binary":
            b.warn(f"'{name}' is binary: it is described as a base64 string.")
        if kind == "tensor":
            spec = _dict(column.get("tensor-spec"))
            dtype = _str(spec.get("dtype"), 30) or "?"
            shape = spec.get("shape")
            shape_text = json.dumps(shape)[:100] if isinstance(shape, list) else "?"
            feature["description"] = f"tensor {dtype}, shape {shape_text}"
        features.append(feature)
    return features


def map_mlflow_mlmodel(data: dict[str, Any]) -> Mapping:
    """An MLmodel file: flavors, signature (columns or tensors), run and time."""
    b = _Builder()
    flavors = _dict(data.get("flavors"))
    flavor = next((f for f in flavors if f != "python_function"), None)
    config = _dict(flavors.get(flavor)) if flavor else {}
    if flavor:
        b.put("training.framework", FLAVOR_FRAMEWORKS.get(flavor, flavor)[:100], 0.9)
        version = next(
            (
                _str(v, 50)
                for k, v in config.items()
                if k.endswith("_version") and k != "python_version" and _str(v, 50)
            ),
            None,
        )
        b.put("training.framework_version", version, 0.9)
    else:
        loader = _str(_dict(flavors.get("python_function")).get("loader_module"), 100)
        if loader and loader.startswith("mlflow."):
            name = loader.removeprefix("mlflow.")
            b.put("training.framework", FLAVOR_FRAMEWORKS.get(name, name), 0.7)
    if flavor in TREE_FLAVORS:
        b.put("model_info.architecture", "tree_ensemble", 0.85)
    elif flavor in ("transformers", "sentence_transformers"):
        b.put("model_info.architecture", "transformer", 0.9)
    else:
        b.suggest(
            "Set model_info.architecture: the MLmodel does not say which estimator "
            "this is."
        )
    created = _str(data.get("utc_time_created"), 40)
    if created and DATE.match(created):
        b.put("training.trained_at", created[:10], 0.8)

    signature = _dict(data.get("signature"))
    inputs = _signature_columns(b, signature.get("inputs"), "inputs")
    outputs = _signature_columns(b, signature.get("outputs"), "outputs")
    tensors = any(f.get("description", "").startswith("tensor") for f in inputs)
    if inputs:
        b.put("input_schema", inputs, 0.8 if tensors else 0.95)
        if not tensors:
            b.put("model_info.modalities", ["tabular"], 0.85)
    else:
        b.suggest("Add a signature (input schema): the MLmodel has none.")
    if len(outputs) == 1:
        b.put("output_schema", {"type": outputs[0]["type"]}, 0.9)
    elif outputs:
        b.put("output_schema", {"fields": outputs}, 0.85)

    task = _str(config.get("task"), 100)
    mapped = PIPELINE_TASKS.get(task or "")
    if mapped:
        b.put("model_info.task", mapped[0], 0.9)
        b.put("model_info.modalities", ["text"], 0.6)
    elif len(outputs) == 1 and not tensors and inputs:
        kind = outputs[0]["type"]
        guess = "regression" if kind == "number" else "classification"
        if kind in ("number", "integer", "string", "boolean"):
            b.put("model_info.task", guess, 0.5)
            b.warn(
                f"model_info.task '{guess}' is guessed from the output type ({kind})."
            )
    run_id = _str(data.get("run_id"), 100)
    if run_id:
        b.suggest(f"MLflow run {run_id}: record it as lineage of the version.")
    b.suggest("Add evaluation metrics (performance): the MLmodel carries none.")
    return b.result()


# --- Open Inference Protocol -------------------------------------------------------

OIP_TYPES = {
    "BOOL": "boolean",
    "UINT8": "integer",
    "UINT16": "integer",
    "UINT32": "integer",
    "UINT64": "integer",
    "INT8": "integer",
    "INT16": "integer",
    "INT32": "integer",
    "INT64": "integer",
    "FP16": "number",
    "BF16": "number",
    "FP32": "number",
    "FP64": "number",
    "BYTES": "string",
}
OIP_PLATFORMS = {
    "onnxruntime_onnx": "onnx",
    "tensorrt_plan": "tensorrt",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "sklearn": "scikit-learn",
    "mlserver_sklearn": "scikit-learn",
    "xgboost": "xgboost",
    "mlserver_xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "mlserver_lightgbm": "lightgbm",
}


def _oip_tensor(
    b: _Builder, tensor: dict[str, Any], index: int, side: str
) -> dict[str, Any] | None:
    datatype = (_str(tensor.get("datatype"), 20) or "").upper()
    kind = OIP_TYPES.get(datatype)
    if kind is None:
        b.warn(f"{side}[{index}]: datatype '{datatype}' is not known; skipped.")
        return None
    name = _str(tensor.get("name"), 200) or f"{side[:-1]}_{index}"
    shape = tensor.get("shape")
    dims = [d for d in shape if isinstance(d, int)] if isinstance(shape, list) else []
    elements = dims[1:] if dims[:1] == [-1] else dims
    feature: dict[str, Any] = {"name": name, "type": kind, "required": True}
    if any(d != 1 for d in elements):
        feature["type"] = "array"
        feature["description"] = f"{datatype} tensor, shape {json.dumps(dims)[:100]}"
    feature["_rank"] = len(elements)
    return feature


def map_oip_model_metadata(data: dict[str, Any]) -> Mapping:
    """GET /v2/models/{name} of the Open Inference Protocol (KServe, Triton, MLServer)."""
    b = _Builder()
    b.put("model_info.name", _str(data.get("name")), 0.95)
    platform = (_str(data.get("platform"), 100) or "").lower()
    if platform:
        framework = OIP_PLATFORMS.get(platform)
        b.put("training.framework", framework or platform, 0.8 if framework else 0.6)
        if framework in ("xgboost", "lightgbm"):
            b.put("model_info.architecture", "tree_ensemble", 0.7)
    sides: dict[str, list[dict[str, Any]]] = {}
    for side in ("inputs", "outputs"):
        tensors = data.get(side) if isinstance(data.get(side), list) else []
        seen: set[str] = set()
        features = []
        for index, tensor in enumerate(tensors or []):
            if not isinstance(tensor, dict):
                continue
            feature = _oip_tensor(b, tensor, index, side)
            if feature is None or feature["name"] in seen:
                continue
            seen.add(feature["name"])
            features.append(feature)
        sides[side] = features
    ranks = [f.pop("_rank") for f in sides["inputs"]]
    for f in sides["outputs"]:
        f.pop("_rank")
    inputs, outputs = sides["inputs"], sides["outputs"]
    if inputs:
        arrays = any(f["type"] == "array" for f in inputs)
        b.put("input_schema", inputs, 0.85 if arrays else 0.9)
        kinds = {f["type"] for f in inputs}
        if max(ranks) >= 3:
            b.put("model_info.modalities", ["image"], 0.6)
        elif "string" in kinds:
            b.put("model_info.modalities", ["text"], 0.4)
        else:
            b.put("model_info.modalities", ["tabular"], 0.5)
    if len(outputs) == 1:
        b.put("output_schema", {"type": outputs[0]["type"]}, 0.85)
    elif outputs:
        b.put("output_schema", {"fields": outputs}, 0.85)
    names = " ".join(f["name"].lower() for f in outputs)
    if any(w in names for w in ("label", "class", "prob")):
        b.put("model_info.task", "classification", 0.5)
        b.warn("model_info.task 'classification' is guessed from the output names.")
    elif len(outputs) == 1 and outputs[0]["type"] == "number":
        b.put("model_info.task", "regression", 0.4)
        b.warn("model_info.task 'regression' is guessed from a single numeric output.")
    else:
        b.suggest("Set model_info.task: OIP metadata does not say what the model does.")
    b.suggest("Add a license and evaluation metrics: OIP metadata has neither.")
    return b.result()


# --- canonical and unknown ---------------------------------------------------------


def map_canonical(data: dict[str, Any]) -> Mapping:
    """Already our shape: every valid field is kept as stated."""
    clean, dropped = validate_partial(data)
    clean = {k: v for k, v in clean.items() if v not in ({}, [], "")}
    return Mapping(clean, {p: 1.0 for p in field_paths(clean)}, dropped, [])


def map_unknown(data: Any) -> Mapping:
    return Mapping(
        {},
        {},
        ["The format was not recognised: the deterministic engine found nothing."],
        [
            "Use the LLM engine (engine=llm with a provider), or paste one of the "
            "recognised formats."
        ],
    )


MAPPERS: dict[str, Callable[[dict[str, Any]], Mapping]] = {
    "huggingface_config": map_huggingface_config,
    "huggingface_model_card": map_huggingface_model_card,
    "openai_model": map_openai_model,
    "anthropic_model": map_anthropic_model,
    "google_model": map_google_model,
    "mlflow_mlmodel": map_mlflow_mlmodel,
    "oip_model_metadata": map_oip_model_metadata,
    "canonical": map_canonical,
}


def map_payload(fmt: str, data: Any, *, body: str = "") -> Mapping:
    """The mapper of `fmt` applied to `data` ("unknown" or a non-object: nothing)."""
    mapper = MAPPERS.get(fmt)
    if mapper is None or not isinstance(data, dict):
        return map_unknown(data)
    if fmt == "huggingface_model_card":
        return map_huggingface_model_card(data, body)
    return mapper(data)
