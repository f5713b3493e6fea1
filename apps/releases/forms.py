"""Console forms of releases: promote, roll back, compare two versions."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.registry.constants import Environment

DAY_CHOICES = [(7, "7 days"), (30, "30 days"), (90, "90 days")]


class PromoteForm(forms.Form):
    version = forms.IntegerField(min_value=1, max_value=10**9)
    environment = forms.ChoiceField(choices=Environment.choices)
    traffic_percent = forms.IntegerField(
        min_value=1, max_value=100, required=False, label="Canary share of prod's runs (%)"
    )
    note = forms.CharField(max_length=300, required=False)


class RollbackForm(forms.Form):
    environment = forms.ChoiceField(choices=Environment.choices)
    note = forms.CharField(max_length=300, required=False)
    next = forms.CharField(max_length=300, required=False)


class CompareForm(forms.Form):
    left = forms.IntegerField(min_value=1, max_value=10**9, label="Reference version")
    right = forms.IntegerField(min_value=1, max_value=10**9, label="Compared version")
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PROD)
    days = forms.TypedChoiceField(
        choices=DAY_CHOICES, coerce=int, initial=30, label="Runs of the last"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("left", "right"):
            self.fields[name].widget.attrs["inputmode"] = "numeric"
