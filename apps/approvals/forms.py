"""Console forms of approval gates: answering a request, configuring gates and risk
mappings, delegating authority. Forms parse and bound input; the rules are in services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from apps.accounts.models import User
from apps.registry.constants import RiskClass
from apps.registry.models import Agent, Tool

from .constants import ACTION_MAX, FEEDBACK_MAX, ExpiryOutcome, GateOutcome, Verdict

SORTS = [("deadline", "Deadline first"), ("age", "Oldest first"), ("newest", "Newest first")]


class InboxFilterForm(forms.Form):
    sort = forms.ChoiceField(choices=SORTS, required=False)
    risk = forms.ChoiceField(choices=[("", "Every risk"), *RiskClass.choices], required=False)

    def values(self) -> tuple[str, str]:
        if not self.is_valid():
            return "deadline", ""
        return self.cleaned_data.get("sort") or "deadline", self.cleaned_data.get("risk") or ""


class AnswerForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices)
    comment = forms.CharField(
        required=False,
        max_length=FEEDBACK_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Reason or feedback",
        help_text="Required to reject or to request changes; the agent receives it.",
    )


class GateForm(forms.Form):
    risk_class = forms.ChoiceField(choices=RiskClass.choices)
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("slug"),
        required=False,
        to_field_name="slug",
        empty_label="Every agent (the organisation's gate)",
        help_text="Set an agent to override the organisation's gate for it only.",
    )
    outcome = forms.ChoiceField(choices=GateOutcome.choices)
    approvals_required = forms.IntegerField(min_value=1, max_value=5, initial=1)
    expires_after_minutes = forms.IntegerField(
        min_value=1, max_value=30 * 24 * 60, initial=60, label="Expires after (minutes)"
    )
    on_expiry = forms.ChoiceField(choices=ExpiryOutcome.choices, initial=ExpiryOutcome.DENY)
    escalate_after_minutes = forms.IntegerField(
        min_value=1,
        max_value=30 * 24 * 60,
        required=False,
        label="Escalate after (minutes)",
        help_text="Raise an unanswered request to organisation-wide approvers then. Empty: never.",
    )


class ActionRiskForm(forms.Form):
    tool = forms.ModelChoiceField(queryset=Tool.objects.order_by("slug"), to_field_name="slug")
    action = forms.CharField(
        max_length=ACTION_MAX, required=False, help_text="Empty: every action of the tool."
    )
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("slug"),
        required=False,
        to_field_name="slug",
        empty_label="Every agent",
    )
    risk_class = forms.ChoiceField(choices=RiskClass.choices)


class DelegationForm(forms.Form):
    delegate = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
        help_text="Who answers in your place.",
    )
    starts_at = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="From (UTC)"
    )
    ends_at = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Until (UTC)"
    )
    reason = forms.CharField(max_length=300, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            now = timezone.now().replace(second=0, microsecond=0)
            self.initial.setdefault("starts_at", now.strftime("%Y-%m-%dT%H:%M"))
