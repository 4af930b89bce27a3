"""Google Gemini through its OpenAI-compatible endpoint, with the openai SDK."""

from __future__ import annotations

from typing import ClassVar

from apps.providers.connectors.base import Connector, DiscoveredModel
from apps.providers.connectors.openai import OpenAIConnector


class GoogleConnector(OpenAIConnector):
    kind: ClassVar[str] = "google"
    default_base_url: ClassVar[str] = (
        "https://generativelanguage.googleapis.com/v1beta/openai/"
    )
    has_organization: ClassVar[bool] = False
    supports_fine_tune: ClassVar[bool] = False

    def list_models(self) -> list[DiscoveredModel]:
        # Gemini names models "models/gemini-..."; calls take the bare id.
        return [
            DiscoveredModel(
                id=m.id.removeprefix("models/"),
                name=m.name,
                owned_by=m.owned_by or "google",
                created=m.created,
                capabilities=("embedding",)
                if "embedding" in m.id
                else ("chat", "completion"),
                raw=m.raw,
            )
            for m in super().list_models()
        ]

    # Gemini's OpenAI-compatible surface has no fine-tuning jobs.
    fine_tune_create = Connector.fine_tune_create
    fine_tune_status = Connector.fine_tune_status
    fine_tune_events = Connector.fine_tune_events
    fine_tune_cancel = Connector.fine_tune_cancel
