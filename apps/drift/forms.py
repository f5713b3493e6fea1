"""Console forms of drift detection: the alert list's filter and what people do with an alert."""

from __future__ import annotations

from django import forms

from apps.registry.constants import Environment

from .constants import AlertStatus, Severity

STATUS_CHOICES = [
    ("live", "Live (open, acknowledged, snoozed)"),
    *AlertStatus.choices,
    ("all", "All"),
]
SNOOZE_CHOICES = [(1, "1 hour"), (4, "4 hours"), (24, "1 day"), (72, "3 days"), (168, "1 week")]


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, initial="live")
    severity = forms.ChoiceField(choices=[("", "Any"), *Severity.choices], required=False)
    environment = forms.ChoiceField(choices=[("", "Any"), *Environment.choices], required=False)
    agent = forms.SlugField(max_length=60, required=False, label="Agent (slug)")


class PinBaselineForm(forms.Form):
    """Pin an agent's baseline in an environment to a window of one version's runs."""

    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PROD)
    version = forms.IntegerField(min_value=1, max_value=10**9)
    start = forms.DateTimeField(
        label="From (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        label="To (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    note = forms.CharField(max_length=300, required=False)


class SnoozeForm(forms.Form):
    hours = forms.TypedChoiceField(choices=SNOOZE_CHOICES, coerce=int, label="Snooze for")


class ResolveForm(forms.Form):
    resolution = forms.CharField(
        max_length=300, required=False, label="What was done",
        widget=forms.TextInput(attrs={"placeholder": "Rolled back to v1; KB fix under way"}),
    )  # fmt: skip
