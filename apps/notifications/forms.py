from django import forms

from apps.notifications.models import Event


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(max_length=500, label="URL")
    events = forms.MultipleChoiceField(
        choices=Event.choices, widget=forms.CheckboxSelectMultiple
    )
    description = forms.CharField(max_length=200, required=False)
