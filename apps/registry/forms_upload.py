"""The upload page's form. It validates and shapes; `version_upload` saves."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from apps.core.errors import ApplicationError
from apps.registry.metadata import FEATURE_TYPES

SCHEMA_HELP = (
    "Needed when the model does not name its features. JSON, e.g. "
    '[{"name": "age", "type": "number"}], or one feature per line as '
    "name or name: type (type one of " + ", ".join(FEATURE_TYPES) + "; default number)."
)


class ModelUploadForm(forms.Form):
    file = forms.FileField(
        label="Model file",
        help_text="skops (skops.io.dump) or ONNX. Pickle and joblib files are refused.",
    )
    model_name = forms.CharField(
        label="Model name",
        max_length=200,
        help_text="A new model, or an existing one to add a version to.",
    )
    input_schema = forms.CharField(
        label="Feature schema",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text=SCHEMA_HELP,
    )
    label_map = forms.FileField(
        label="Label map", required=False, help_text="Optional: JSON or text."
    )
    model_card = forms.FileField(
        label="Model card", required=False, help_text="Optional: Markdown or text."
    )

    def clean_input_schema(self) -> list[dict[str, Any]] | None:
        raw = self.cleaned_data.get("input_schema", "").strip()
        if not raw:
            return None
        if raw.startswith("["):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise forms.ValidationError(f"Not valid JSON: {exc}.") from exc
            if not isinstance(value, list):
                raise forms.ValidationError("A JSON list of features.")
            return value
        features = []
        for number, line in enumerate(raw.splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            name, _, kind = line.partition(":")
            name, kind = name.strip(), kind.strip() or "number"
            if not name:
                raise forms.ValidationError(f"Line {number} has no feature name.")
            if kind not in FEATURE_TYPES:
                raise forms.ValidationError(
                    f"Line {number}: '{kind}' is not one of {', '.join(FEATURE_TYPES)}."
                )
            features.append({"name": name, "type": kind})
        return features

    def extra_files(self) -> list[tuple[str, Any]]:
        return [
            (role, self.cleaned_data[role])
            for role in ("label_map", "model_card")
            if self.cleaned_data.get(role)
        ]

    def add_service_error(self, exc: ApplicationError) -> None:
        """A service's refusal shown on the form, by field when it names one."""
        if not exc.fields:
            self.add_error(None, exc.message)
            return
        for name, messages in exc.fields.items():
            field = name if name in self.fields else None
            lines = [str(m) for m in messages]
            if field is None:
                lines = [exc.message, *lines]
            self.add_error(field, lines)
