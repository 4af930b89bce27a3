"""The baselines on the server under test: for item 1, a bare Django view calling the
same in-memory model as the predict endpoint, with nothing else around it (no DRF, no
authentication, no validation, no routing, no logging); for item 9's context, a bare
Django view answering a fixed chat completion (what any door on this server costs
before it does anything).

Served only under config.settings.bench (config/urls_bench.py). The model is loaded
once per process through the same artifact_load (same sha256 check, same cache).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

_models: dict[tuple[str, int], tuple[list[str], Any]] = {}


def _model(version_id: int) -> tuple[list[str], Any]:
    key = (connection.schema_name, version_id)
    if key not in _models:
        from apps.registry.artifacts import artifact_load
        from apps.registry.models import ModelArtifact, ModelVersion

        version = ModelVersion.objects.get(pk=version_id)
        artifact = ModelArtifact.objects.get(
            version_id=version_id, role=ModelArtifact.Role.MODEL
        )
        names = [f["name"] for f in version.input_schema]
        _models[key] = (names, artifact_load(artifact))
    return _models[key]


@csrf_exempt
@require_POST
def bare_predict(request: HttpRequest) -> JsonResponse:
    """`POST /bench/bare-predict/?version=<id>` with `{"inputs": {feature: value}}`."""
    names, model = _model(int(request.GET["version"]))
    row = json.loads(request.body)["inputs"]
    matrix = np.asarray([[row.get(n) for n in names]], dtype=float)
    prediction = model.predict(matrix)[0]
    probabilities = model.predict_proba(matrix)[0]
    return JsonResponse(
        {
            "prediction": prediction.item(),
            "probabilities": {
                str(c.item()): round(float(p), 6)
                for c, p in zip(model.classes_, probabilities, strict=True)
            },
        }
    )


# The fixed answer of item 9's fake provider and of the bare view below.
FAKE_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 1764201600,
    "model": "fake-gpt",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "benign."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


@csrf_exempt
@require_POST
def bare_chat(request: HttpRequest) -> JsonResponse:
    """`POST /bench/bare-chat/v1/chat/completions`: reads the body, answers a fixed
    chat.completion (the fake provider's), nothing else."""
    json.loads(request.body)
    return JsonResponse(FAKE_COMPLETION)
