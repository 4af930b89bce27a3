"""`/openai/v1/`: the OpenAI-compatible door."""

from django.urls import path

from apps.groups.api import openai_compat

urlpatterns = [
    path("models", openai_compat.ModelsView.as_view(), name="openai-models"),
    path(
        "chat/completions",
        openai_compat.ChatCompletionsView.as_view(),
        name="openai-chat",
    ),
]
