"""Forms of the model pages. They validate and shape; services save."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.providers.models import ProviderConfig

MAX_IMPORT_ITEMS = 500
MODES = [
    ("skip_errors", "Skip errors: import every good model, report the others"),
    ("fail_fast", "All or nothing: stop and import none at the first problem"),
]


class ExternalIdsField(forms.Field):
    """The ticked catalogue entries: many values of one checkbox name."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        values = value if isinstance(value, list | tuple) else [value]
        return list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_IMPORT_ITEMS:
            raise forms.ValidationError(
                f"At most {MAX_IMPORT_ITEMS} models at a time.", code="max"
            )
        if any("\x00" in v for v in value):
            raise forms.ValidationError(
                "Null characters are not allowed.", code="null_characters_not_allowed"
            )
        if any(len(v) > 300 for v in value):
            raise forms.ValidationError(
                "A model id is at most 300 characters.", code="max_length"
            )


class ImportProviderForm(forms.Form):
    provider = forms.ModelChoiceField(
        queryset=ProviderConfig.objects.order_by("name"),
        empty_label="Choose a provider",
    )
    external_ids = ExternalIdsField(
        label="Models",
        error_messages={"required": "Tick at least one model of the catalogue."},
    )
    mode = forms.ChoiceField(
        choices=MODES, initial="skip_errors", widget=forms.RadioSelect
    )
    activate = forms.BooleanField(
        required=False,
        label="Make them active",
        help_text="Otherwise new versions start as drafts.",
    )
