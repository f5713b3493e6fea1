"""Console forms of drift detection: the alert list's filter and what people do with an alert."""

from __future__ import annotations

from django import forms

from .constants import AlertStatus

STATUS_CHOICES = [
    ("live", "Live (open, acknowledged, snoozed)"),
    *AlertStatus.choices,
    ("all", "All"),
]
SNOOZE_CHOICES = [(1, "1 hour"), (4, "4 hours"), (24, "1 day"), (72, "3 days"), (168, "1 week")]


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, initial="live")


class SnoozeForm(forms.Form):
    hours = forms.TypedChoiceField(choices=SNOOZE_CHOICES, coerce=int, label="Snooze for")


class ResolveForm(forms.Form):
    resolution = forms.CharField(
        max_length=300, required=False, label="What was done",
        widget=forms.TextInput(attrs={"placeholder": "Rolled back to v1; KB fix under way"}),
    )  # fmt: skip
