from django import forms

from apps.accounts.roles import Scope


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=50, help_text="What uses this key, e.g. 'ci' or 'web-app'."
    )
    scope = forms.ChoiceField(
        choices=Scope.CHOICES,
        help_text=(
            "predict: the prediction endpoints and feedback only. "
            "manage: the whole API."
        ),
    )
