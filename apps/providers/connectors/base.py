"""The connector contract. One module per provider kind, one class per module."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from apps.providers.errors import ProviderError


@dataclass(frozen=True)
class ProviderSettings:
    """What a connector gets: plain values, the key decrypted for this call only."""

    kind: str
    base_url: str
    api_key: str = field(repr=False, default="")
    organization: str = ""
    project: str = ""
    default_model: str = ""
    timeout: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationReport:
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class DiscoveredModel:
    """One model in a provider's catalogue, with the provider's own metadata in `raw`."""

    id: str
    name: str = ""
    owned_by: str = ""
    created: int | None = None
    capabilities: tuple[str, ...] = ()
    context_window: int | None = None
    max_output_tokens: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InvokeRequest:
    """Chat for LLM kinds (`messages`), JSON inputs for predictive endpoints (`inputs`)."""

    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    inputs: Any = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InvokeResult:
    output: Any
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


class Connector(abc.ABC):
    kind: ClassVar[str]
    default_base_url: ClassVar[str]
    requires_api_key: ClassVar[bool] = True
    has_organization: ClassVar[bool] = False
    supports_fine_tune: ClassVar[bool] = False

    def __init__(self, config: ProviderSettings) -> None:
        self.config = config

    @classmethod
    def validate_config(cls, data: dict[str, Any]) -> ValidationReport:
        """Kind-specific checks on a would-be configuration; no network."""
        report = ValidationReport()
        if (
            cls.requires_api_key
            and not data.get("api_key")
            and not data.get("has_api_key")
        ):
            report.error("api_key", f"{cls.kind} needs an API key.")
        if not data.get("default_model"):
            report.warnings.append("No default model: every call must name one.")
        return report

    def health_check(self) -> None:
        """Raise ProviderError unless the provider answers an authenticated call."""
        self.list_models()

    @abc.abstractmethod
    def list_models(self) -> list[DiscoveredModel]:
        """The provider's catalogue."""

    @abc.abstractmethod
    def invoke(self, request: InvokeRequest) -> InvokeResult:
        """One chat/completion or prediction."""

    def fine_tune_create(self, **kwargs: Any) -> dict[str, Any]:
        raise ProviderError("unsupported", f"{self.kind} has no fine-tuning")

    def fine_tune_status(self, job_id: str) -> dict[str, Any]:
        raise ProviderError("unsupported", f"{self.kind} has no fine-tuning")

    def fine_tune_events(self, job_id: str) -> list[dict[str, Any]]:
        raise ProviderError("unsupported", f"{self.kind} has no fine-tuning")

    def fine_tune_cancel(self, job_id: str) -> dict[str, Any]:
        raise ProviderError("unsupported", f"{self.kind} has no fine-tuning")

    def model_for(self, request: InvokeRequest) -> str:
        model = request.model or self.config.default_model
        if not model:
            raise ProviderError(
                "bad_request", "no model given and no default model set"
            )
        return model
