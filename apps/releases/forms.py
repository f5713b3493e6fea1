"""Console forms of releases: promote, roll back, compare two versions."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.registry.constants import Environment

from .models import EvalMode

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
        choices=DAY_CHOICES, coerce=int, initial=30, required=False, empty_value="30",
        label="Runs of the last",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("left", "right"):
            self.fields[name].widget.attrs["inputmode"] = "numeric"


def _slug_list(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


class SuiteForm(forms.Form):
    """A new evaluation suite (validated in full by ``evals.suite_create``)."""

    name = forms.CharField(max_length=100)
    mode = forms.ChoiceField(choices=EvalMode.choices, initial=EvalMode.RECORDED)
    hook_url = forms.CharField(max_length=500, required=False, label="Eval hook URL")
    hook_secret = forms.CharField(
        max_length=200, required=False, label="Signing secret", widget=forms.PasswordInput
    )
    min_pass_rate = forms.IntegerField(
        min_value=0, max_value=100, initial=90, label="Minimum pass rate (%)"
    )
    max_regression_points = forms.IntegerField(
        min_value=0, max_value=100, initial=5, label="Largest drop allowed (points)"
    )


class CaseForm(forms.Form):
    """A new case (validated in full by ``evals.case_add``)."""

    name = forms.CharField(max_length=100)
    task = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    expected_outcome = forms.CharField(max_length=100, required=False, label="Expected outcome")
    required_tools = forms.CharField(
        max_length=2000, required=False, label="Tools it must call (comma-separated)"
    )
    forbidden_tools = forms.CharField(
        max_length=2000, required=False, label="Tools it must never call"
    )
    must_finish = forms.BooleanField(required=False, initial=True, label="The run must finish")

    def case_data(self) -> dict[str, object]:
        data = dict(self.cleaned_data)
        data["required_tools"] = _slug_list(data["required_tools"])
        data["forbidden_tools"] = _slug_list(data["forbidden_tools"])
        return data


class EvaluateForm(forms.Form):
    version = forms.IntegerField(min_value=1, max_value=10**9)
