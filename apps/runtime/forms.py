"""Console forms for the runtime: credentials, the decision explorer's filters, delegations.

They parse and shape input; the services decide (and refuse with field-by-field details).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from apps.registry.constants import Environment
from apps.registry.models import Agent, ToolGrant

from .constants import Disposition, Reason

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
TARGET_MAX = 200


def _datetime_field(label: str, *, required: bool, help_text: str = "") -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=required,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=help_text,
    )


class CredentialIssueForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Where it is used, so you recognise it later, e.g. prod worker.",
    )
    environment = forms.ChoiceField(
        choices=(), help_text="A credential works in one environment only."
    )

    def __init__(self, *args: Any, agent: Agent, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        labels = dict(Environment.choices)
        field = self.fields["environment"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(env, labels.get(env, env)) for env in agent.environments]
        if not agent.environments:
            field.help_text = "The agent has no environment yet: edit it before issuing one."


class DecisionFilterForm(forms.Form):
    """The explorer's filters. Every field is optional; invalid ones are ignored and shown."""

    agent = forms.ChoiceField(required=False, choices=())
    tool = forms.CharField(
        required=False,
        max_length=TARGET_MAX,
        label="Target",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "tool, model or store"}),
    )
    disposition = forms.ChoiceField(
        required=False, choices=[("", "Any disposition"), *Disposition.choices]
    )
    reason = forms.ChoiceField(
        required=False,
        label="Reason code",
        choices=[("", "Any reason")] + [(r.value, r.value) for r in Reason],
    )
    since = _datetime_field("Since (UTC)", required=False)
    until = _datetime_field("Until (UTC)", required=False)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agents = Agent.objects.for_user(user).order_by("slug").values_list("slug", flat=True)
        field = self.fields["agent"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "Any agent")] + [(slug, slug) for slug in agents]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "Must not be before “since”.")
        return cleaned

    def filters(self) -> dict[str, Any]:
        """The valid filters only; a bad one is dropped (and its error shown) rather than 400."""
        if not self.is_bound:
            return {}
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {
            name: cleaned[name]
            for name in self.fields
            if name not in self.errors and cleaned.get(name) not in (None, "")
        }


class DelegationForm(forms.Form):
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.none(),
        to_field_name="slug",
        empty_label="Choose an agent",
        help_text="Agents you can see.",
    )
    tools = forms.MultipleChoiceField(
        required=False,
        choices=(),
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Optional: limit the delegation to these tools. None selected means every "
        "tool the agent holds.",
    )
    expires_at = _datetime_field(
        "Expires (UTC)", required=True, help_text="At most a year from now."
    )
    note = forms.CharField(
        required=False,
        max_length=300,
        help_text="Why, for your records, e.g. handle my claims while I am on leave.",
    )

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data["expires_at"]
        now = timezone.now()
        if value <= now:
            raise forms.ValidationError("Must be in the future.")
        if value > now + timedelta(days=366):
            raise forms.ValidationError("At most a year from now.")
        return value

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agents = Agent.objects.for_user(user).order_by("name")
        agent_field = self.fields["agent"]
        assert isinstance(agent_field, forms.ModelChoiceField)
        agent_field.queryset = agents
        slugs = (
            ToolGrant.objects.filter(agent__in=agents)
            .order_by("tool__slug")
            .values_list("tool__slug", flat=True)
            .distinct()
        )
        tools_field = self.fields["tools"]
        assert isinstance(tools_field, forms.MultipleChoiceField)
        tools_field.choices = [(slug, slug) for slug in slugs]
        if not self.is_bound:
            self.initial.setdefault(
                "expires_at",
                (timezone.now() + timedelta(days=30)).replace(second=0, microsecond=0),
            )
