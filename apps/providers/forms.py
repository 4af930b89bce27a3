"""Provider pages' forms. They validate and shape; services save."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.validators import MinValueValidator

from apps.core.errors import ApplicationError
from apps.core.ssrf import UnsafeURLError, check_url
from apps.providers.models import ProviderConfig
from apps.providers.selectors import connector_or_none

MAX_TIMEOUT_SECONDS = 600
MODEL_FIELDS = [
    "name",
    "kind",
    "base_url",
    "organization",
    "project",
    "default_model",
    "timeout_seconds",
    "max_retries",
    "rate_limit_per_minute",
    "enabled",
    "price_per_1k_input",
    "price_per_1k_output",
    "monthly_token_budget",
    "monthly_cost_budget",
]
# Form inputs that live in ProviderConfig.settings, per kind.
SETTINGS_FIELDS = {
    "custom_http": [
        "request_template",
        "response_path",
        "auth_header",
        "auth_scheme",
        "health_url",
    ],
    "huggingface": ["task"],
}
FIELDSETS = [
    (
        "Connection",
        [
            "name",
            "kind",
            "base_url",
            "organization",
            "project",
            "api_key",
            "clear_api_key",
            "default_model",
            "enabled",
        ],
    ),
    ("Options of this kind", [n for names in SETTINGS_FIELDS.values() for n in names]),
    (
        "Limits and cost",
        [
            "timeout_seconds",
            "max_retries",
            "rate_limit_per_minute",
            "price_per_1k_input",
            "price_per_1k_output",
            "monthly_token_budget",
            "monthly_cost_budget",
        ],
    ),
]
ALL_SETTINGS_FIELDS = {name for names in SETTINGS_FIELDS.values() for name in names}
JSON_SETTINGS = {"request_template"}
NON_NEGATIVE = ["price_per_1k_input", "price_per_1k_output", "monthly_cost_budget"]


class ProviderForm(forms.ModelForm):
    """Create or edit a provider; the inputs follow the kind (see `kind`)."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        max_length=2000,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
    )
    base_url = forms.URLField(
        label="Base URL", required=False, max_length=500, assume_scheme="https"
    )
    max_retries = forms.IntegerField(
        min_value=0,
        max_value=10,
        initial=2,
        help_text="Retries after a timeout, 429 or 5xx (with backoff), at most 10.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)
    request_template = forms.CharField(
        label="Request template (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=(
            'The JSON body sent to the endpoint; "{{inputs}}", "{{messages}}", '
            '"{{model}}" and "{{parameters}}" are replaced. Empty: '
            '{"inputs": "{{inputs}}"}.'
        ),
    )
    response_path = forms.CharField(
        required=False,
        max_length=200,
        help_text="Where the answer is in the response JSON, e.g. data.0.prediction.",
    )
    auth_header = forms.CharField(
        label="Auth header",
        required=False,
        max_length=100,
        help_text="Header carrying the key. Empty: Authorization.",
    )
    auth_scheme = forms.CharField(
        label="Auth scheme",
        required=False,
        max_length=50,
        help_text="Put before the key, e.g. Bearer (the default) or Token.",
    )
    health_url = forms.CharField(
        label="Health URL",
        required=False,
        max_length=500,
        help_text="Checked by Test connection. Empty: the endpoint itself.",
    )
    task = forms.CharField(
        required=False,
        max_length=100,
        help_text="The model's pipeline task, e.g. text-classification.",
    )

    class Meta:
        model = ProviderConfig
        fields = MODEL_FIELDS

    def __init__(
        self, *args: Any, kind: str | None = None, switch_url: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance if self.instance.pk else None
        self.kind = (
            kind
            or self.data.get("kind")
            or self.initial.get("kind")
            or ProviderConfig.Kind.OPENAI
        )
        self.connector = connector_or_none(self.kind)
        self.has_stored_key = bool(stored and stored.api_key)

        self.initial["kind"] = self.kind
        kind_field = self.fields["kind"]
        kind_field.choices = ProviderConfig.Kind.choices  # type: ignore[attr-defined]
        if switch_url:
            # The key never travels in a URL: it is left out of the re-render.
            kind_field.widget.attrs.update(
                {
                    "hx-get": switch_url,
                    "hx-target": "#provider-fields",
                    "hx-swap": "outerHTML",
                    "hx-include": "closest form",
                    "hx-params": "not api_key,clear_api_key,csrfmiddlewaretoken",
                }
            )

        base_url = self.fields["base_url"]
        default_url = self.connector.default_base_url if self.connector else ""
        base_url.widget.attrs["placeholder"] = default_url or "https://…"
        base_url.help_text = (
            "Empty: the default endpoint of this kind."
            if default_url
            else "The endpoint's full URL."
        )
        self.fields["timeout_seconds"].help_text = "Seconds, more than 0, at most 600."
        for name in NON_NEGATIVE:
            self.fields[name].validators.append(MinValueValidator(0))
            self.fields[name].widget.attrs["min"] = 0

        if not (self.connector and self.connector.has_organization):
            del self.fields["organization"], self.fields["project"]
        for name in ALL_SETTINGS_FIELDS - set(SETTINGS_FIELDS.get(self.kind, [])):
            del self.fields[name]
        if stored is not None and not self.is_bound:
            for name in SETTINGS_FIELDS.get(self.kind, []):
                if name in stored.settings and name not in self.initial:
                    value = stored.settings[name]
                    self.initial[name] = (
                        json.dumps(value, indent=2) if name in JSON_SETTINGS else value
                    )

        api_key = self.fields["api_key"]
        needs_key = self.connector is None or self.connector.requires_api_key
        if self.has_stored_key:
            api_key.widget.attrs["placeholder"] = (
                f"{stored.api_key_masked or '••••'} (leave empty to keep)"  # type: ignore[union-attr]
            )
            api_key.help_text = "Leave empty to keep the stored key."
        else:
            del self.fields["clear_api_key"]
            api_key.help_text = (
                "Required for this kind." if needs_key else "Optional for this kind."
            )

    @property
    def fieldsets(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The inputs of this kind, grouped for the template (empty groups left out)."""
        groups = []
        for title, names in FIELDSETS:
            bound = [self[name] for name in names if name in self.fields]
            if bound:
                groups.append((title, bound))
        return groups

    @property
    def settings_fields(self) -> list[str]:
        return [n for n in SETTINGS_FIELDS.get(self.kind, []) if n in self.fields]

    def clean_timeout_seconds(self) -> float:
        value = self.cleaned_data["timeout_seconds"]
        if value is not None and not 0 < value <= MAX_TIMEOUT_SECONDS:
            raise forms.ValidationError(
                f"Must be more than 0 and at most {MAX_TIMEOUT_SECONDS} seconds."
            )
        return value

    def clean_base_url(self) -> str:
        value = self.cleaned_data.get("base_url") or ""
        if not value and self.connector is not None:
            value = self.connector.default_base_url
        if value:
            try:
                check_url(value, resolve=False)
            except UnsafeURLError as exc:
                raise forms.ValidationError(exc.message, code="unsafe_url") from exc
        return value

    def clean_request_template(self) -> Any:
        text = (self.cleaned_data.get("request_template") or "").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from exc

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.connector is None:
            self.add_error("kind", f"No connector is available for '{self.kind}'.")
            return cleaned
        data = {
            **{k: v for k, v in cleaned.items() if k in MODEL_FIELDS},
            "settings": self.build_settings(),
            "api_key": cleaned.get("api_key") or "",
            "has_api_key": self.has_stored_key and not cleaned.get("clear_api_key"),
        }
        report = self.connector.validate_config(data)
        for name, messages in report.errors.items():
            field = self.field_for(name)
            if field not in self.errors:  # one problem at a time per input
                self.add_error(field, messages)
        return cleaned

    def field_for(self, name: str) -> str | None:
        """The form input an error about `name` belongs to (None: the whole form)."""
        name = name.removeprefix("settings.")
        return name if name in self.fields else None

    def build_settings(self) -> dict[str, Any]:
        """The stored settings with this kind's inputs applied; inputs of other kinds
        are dropped, anything the form does not manage is kept."""
        current = dict(self.instance.settings or {}) if self.instance.pk else {}
        merged = {k: v for k, v in current.items() if k not in ALL_SETTINGS_FIELDS}
        for name in self.settings_fields:
            value = self.cleaned_data.get(name)
            if value not in (None, ""):
                merged[name] = value
        return merged

    def service_fields(self) -> dict[str, Any]:
        """Keyword arguments for provider_create / provider_update (without the key)."""
        fields = {k: v for k, v in self.cleaned_data.items() if k in MODEL_FIELDS}
        fields["settings"] = self.build_settings()
        return fields

    def new_api_key(self) -> str | None:
        """The key to store: None keeps the stored one, "" removes it."""
        key = self.cleaned_data.get("api_key") or ""
        if key:
            return key
        if self.cleaned_data.get("clear_api_key"):
            return ""
        return None

    def add_service_error(self, exc: ApplicationError) -> None:
        """A service's refusal shown on the form, field by field when it names them."""
        if not exc.fields:
            self.add_error(None, exc.message)
            return
        for name, messages in exc.fields.items():
            self.add_error(self.field_for(name), [str(m) for m in messages])


class ProviderBulkForm(forms.Form):
    ACTIONS = [
        ("enable", "Enable"),
        ("disable", "Disable"),
        ("test", "Test connection"),
        ("delete", "Delete"),
    ]

    ids = forms.TypedMultipleChoiceField(coerce=int, choices=[])
    action = forms.ChoiceField(choices=ACTIONS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ids"].choices = [  # type: ignore[attr-defined]
            (str(pk), str(pk))
            for pk in ProviderConfig.objects.values_list("pk", flat=True)
        ]
