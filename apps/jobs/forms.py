from __future__ import annotations

from django import forms


class DatasetUploadForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, header row first.")
    name = forms.CharField(max_length=200, required=False)
