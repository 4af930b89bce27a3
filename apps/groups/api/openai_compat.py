"""OpenAI-compatible door: `model` is a group slug whose members are LLM provider
models. An application using an official OpenAI SDK changes only its base_url."""

from __future__ import annotations

import time
from typing import Any

from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import (
    ApiKeyAuthentication,
    BearerApiKeyAuthentication,
)
from apps.accounts.roles import Role, Scope
from apps.accounts.throttling import PredictRateThrottle
from apps.core.doors import json_answer, json_body
from apps.core.errors import ApplicationError, NotFoundError
from apps.core.serializer_fields import StorableDictField, StorableJSONField
from apps.core.serializers import RequestBodySerializer
from apps.groups.api.views import requester_of
from apps.groups.models import ModelGroup
from apps.groups.serving import group_route, predict

PASSED_PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
)


class ChatRequestSerializer(RequestBodySerializer):
    model = serializers.CharField(max_length=100, help_text="A group slug.")
    # NUL characters pass: the log stores U+FFFD in their place (apps.inference.writer).
    messages = serializers.ListField(child=StorableDictField(nul=False), min_length=1)
    stream = serializers.BooleanField(default=False)
    user = serializers.CharField(
        max_length=200,
        required=False,
        help_text="Also the routing key for sticky groups.",
    )
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False)
    max_tokens = serializers.IntegerField(min_value=1, required=False)
    max_completion_tokens = serializers.IntegerField(min_value=1, required=False)
    stop = StorableJSONField(nul=False, required=False)
    seed = serializers.IntegerField(required=False)
    presence_penalty = serializers.FloatField(min_value=-2, max_value=2, required=False)
    frequency_penalty = serializers.FloatField(
        min_value=-2, max_value=2, required=False
    )
    response_format = StorableDictField(nul=False, required=False)

    def validate_stream(self, value: bool) -> bool:
        if value:
            raise serializers.ValidationError(
                "Streaming is not supported; send stream=false."
            )
        return value


class OpenAIDoor(APIView):
    authentication_classes = [BearerApiKeyAuthentication, ApiKeyAuthentication]
    key_scopes = (Scope.PREDICT, Scope.MANAGE)
    read_role = Role.VIEWER
    write_role = Role.VIEWER


class ModelsView(OpenAIDoor):
    """`GET /openai/v1/models`: the active groups that serve language models."""

    @extend_schema(
        responses=inline_serializer(
            "OpenAIModelList",
            {
                "object": serializers.CharField(),
                "data": serializers.ListField(child=serializers.DictField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        data = []
        for group in ModelGroup.objects.filter(
            status=ModelGroup.Status.ACTIVE
        ).order_by("slug"):
            if group_route(group.slug).is_llm:
                data.append(
                    {
                        "id": group.slug,
                        "object": "model",
                        "created": int(group.created_at.timestamp()),
                        "owned_by": "modelhub",
                    }
                )
        return Response({"object": "list", "data": data})


class ChatCompletionsView(OpenAIDoor):
    """`POST /openai/v1/chat/completions`, routed, logged, answered in OpenAI's shape."""

    throttle_classes = [PredictRateThrottle]

    @extend_schema(
        request=ChatRequestSerializer,
        responses=inline_serializer(
            "ChatCompletion",
            {
                "id": serializers.CharField(),
                "object": serializers.CharField(),
                "created": serializers.IntegerField(),
                "model": serializers.CharField(),
                "choices": serializers.ListField(child=serializers.DictField()),
                "usage": serializers.DictField(),
            },
        ),
    )
    def post(self, request: Request) -> HttpResponseBase:
        payload = ChatRequestSerializer(data=json_body(request))
        payload.is_valid(raise_exception=True)
        data: dict[str, Any] = payload.validated_data
        slug = data["model"]
        try:
            route = group_route(slug)
        except NotFoundError:
            raise ApplicationError(
                f"The model '{slug}' does not exist.",
                code="model_not_found",
                status_code=404,
            ) from None
        if not route.is_llm:
            raise ApplicationError(
                f"'{slug}' does not serve a language model.",
                code="model_not_found",
                status_code=404,
            )
        parameters = {k: data[k] for k in PASSED_PARAMETERS if k in data}
        result = predict(
            slug=slug,
            inputs={"messages": data["messages"], "parameters": parameters},
            routing_key=data.get("user"),
            requester=requester_of(request),
            door="openai",
            request_id=request.request_id,  # type: ignore[attr-defined]
        )
        output = result.outputs
        return json_answer(
            request,
            {
                "id": f"chatcmpl-{result.request_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": slug,
                "system_fingerprint": f"{result.version.model_name} v{result.version.number}",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": output["output"]},
                        "finish_reason": output.get("finish_reason") or "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": output["usage"]["prompt_tokens"],
                    "completion_tokens": output["usage"]["completion_tokens"],
                    "total_tokens": output["usage"]["prompt_tokens"]
                    + output["usage"]["completion_tokens"],
                },
            },
            headers={
                "X-ModelHub-Request-Id": result.request_id,
                "X-ModelHub-Served": f"{result.member.role}:{result.version.id}",
            },
        )
