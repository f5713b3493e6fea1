"""Console forms for the runtime: credentials, the decision explorer's filters, delegations,
budgets.

They parse and shape input; the services decide (and refuse with field-by-field details).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from apps.accounts.models import Department, Team
from apps.registry.constants import Environment
from apps.registry.models import Agent, ToolGrant

from .constants import (
    BUDGET_MODEL_MAX,
    BUDGET_NAME_MAX,
    BudgetEdge,
    BudgetKind,
    BudgetScope,
    Disposition,
    Reason,
)

# Scopes over a department or a team, set on the Budgets page, never on an agent's.
_MONTHLY_OWNER_SCOPES = (BudgetScope.DEPARTMENT_MONTH, BudgetScope.TEAM_MONTH)
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


class TeamChoiceField(forms.ModelChoiceField):
    """Teams named with their department: ``Claims / Claims Ops``."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.department.name} / {obj.name}"


class BudgetForm(forms.Form):
    """A budget over an agent (``agent``), or a month's budget over a department or one of its
    teams (``departments``: where the user may set them; ``teams``: theirs). Editing
    (``budget``) shows kind and scope but cannot change them."""

    department: forms.ModelChoiceField = forms.ModelChoiceField(
        queryset=Department.objects.none(),
        to_field_name="slug",
        empty_label="Choose a department",
        help_text="Departments whose budgets you may set.",
    )
    team: forms.ModelChoiceField = TeamChoiceField(
        queryset=Team.objects.none(),
        to_field_name="slug",
        required=False,
        label="Team",
        empty_label="None: the whole department",
        help_text="Leave it for a budget over the whole department; choose one of its teams to "
        "cap only that team's agents.",
    )
    name = forms.CharField(
        max_length=BUDGET_NAME_MAX, help_text="What it limits, e.g. Tokens per run."
    )
    kind = forms.ChoiceField(choices=BudgetKind.choices, help_text="What it counts.")
    scope = forms.ChoiceField(choices=(), help_text="Over what, and when it starts again.")
    limit = forms.CharField(
        max_length=40,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="Greater than 0: tokens, calls, seconds, US dollars (spend), distinct tools "
        "(scope) or summed risk weights (risk).",
    )
    edge = forms.ChoiceField(
        choices=BudgetEdge.choices,
        initial=BudgetEdge.STOP,
        label="At the limit",
        help_text="Continue records only; degrade answers model calls with a cheaper model "
        "(tokens and spend only); ask needs a person; stop denies.",
    )
    degrade_to_model = forms.CharField(
        required=False,
        max_length=BUDGET_MODEL_MAX,
        label="Degrade to model",
        help_text="Only with “degrade”, e.g. gpt-4.1-mini.",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")

    def __init__(
        self, *args: Any, agent: Agent | None = None, departments: Any = None,
        teams: Any = None, budget: Any = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        scope_field = self.fields["scope"]
        assert isinstance(scope_field, forms.ChoiceField)
        if budget is not None or departments is None:
            del self.fields["department"]
            del self.fields["team"]
        else:
            field = self.fields["department"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = departments
            team_field = self.fields["team"]
            assert isinstance(team_field, forms.ModelChoiceField)
            if teams is not None and teams.exists():
                team_field.queryset = teams.select_related("department")
            else:
                del self.fields["team"]
        if budget is not None:
            scope_field.choices = BudgetScope.choices
            for name in ("kind", "scope"):
                self.fields[name].disabled = True
                self.fields[name].help_text = "Fixed when the budget was created."
            # Even when bound: a disabled field takes its value from the initial data.
            self.initial.update(
                name=budget.name, kind=budget.kind, scope=budget.scope,
                limit=budget.limit_text, edge=budget.edge,
                degrade_to_model=budget.degrade_to_model, enabled=budget.enabled,
            )  # fmt: skip
        elif agent is not None:
            scope_field.choices = [
                c for c in BudgetScope.choices if c[0] not in _MONTHLY_OWNER_SCOPES
            ]
            del self.fields["enabled"]
        else:
            # Per month, over the department or the team chosen above: nothing to choose.
            del self.fields["scope"]
            del self.fields["enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        department, team = data.get("department"), data.get("team")
        if department is not None and team is not None and team.department_id != department.pk:
            self.add_error(
                "team",
                f"{team.name} is a team of {team.department.name}, not {department.name}: "
                "choose one of its teams, or the whole department.",
            )
        return data

    def monthly_owner(self) -> dict[str, Any]:
        """What a month's budget from the Budgets page is over, as ``budget_create`` takes it:
        the chosen team (scope team_month) or else the department (department_month)."""
        team = self.cleaned_data.get("team")
        if team is not None:
            return {"team": team, "scope": BudgetScope.TEAM_MONTH}
        return {
            "department": self.cleaned_data["department"],
            "scope": BudgetScope.DEPARTMENT_MONTH,
        }

    def service_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        result = {
            "name": data["name"],
            "limit": data["limit"],
            "edge": data["edge"],
            "degrade_to_model": data.get("degrade_to_model") or "",
        }
        if "enabled" in self.fields:
            result["enabled"] = bool(data.get("enabled"))
        return result
