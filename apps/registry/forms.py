"""Console forms for the registry. They parse and shape input; the services decide.

Forms are plain ``forms.Form`` rather than ModelForms on purpose: a ModelForm writes the
cleaned values onto the instance before the service runs, which would make the service's
"before" snapshot (audit, versioning) identical to its "after".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar, cast

from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.accounts.constants import Role
from apps.accounts.models import Department, Team, User, slug_validator
from apps.accounts.permissions import scope_of
from apps.common.errors import ApplicationError

from .constants import (
    INSTRUCTIONS_MAX,
    JSON_FIELD_MAX_BYTES,
    NAME_MAX,
    SCHEMA_MAX_BYTES,
    SLUG_MAX,
    AgentStatus,
    AutonomyLevel,
    Environment,
    FailurePosture,
    MemoryAccess,
    MemoryClass,
    PreviewFormat,
    RiskClass,
)
from .models import Agent, DataClass, MemoryStore, Tool, can_create_agent
from .services import COST_PER_CALL_MAX
from .validators import (
    BLAST_RADIUS_KEYS,
    RESERVED_SLUGS,
    WEBHOOK_SECRET_MAX,
    WEBHOOK_SECRET_MIN,
    validate_blast_radius,
    validate_webhook_secret,
    validate_webhook_url,
)

JSON_MAX_DEPTH = 32
# PostgreSQL integers stop at 2**31 - 1; anything near that is a typo, not a rate limit.
RATE_LIMIT_MAX = 1_000_000
RETENTION_DAYS_MAX = 36_500


# --- fields ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def _check_json_value(value: Any, *, max_depth: int) -> None:
    """Reject what PostgreSQL's jsonb or our validators cannot take: NUL characters, lone
    surrogates, and nesting deep enough to exhaust a recursive validator."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise forms.ValidationError(f"The JSON is nested more than {max_depth} levels deep.")
        if isinstance(item, dict):
            for key, inner in item.items():
                _check_json_string(key)
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
        elif isinstance(item, str):
            _check_json_string(item)


def _check_json_string(text: str) -> None:
    if "\x00" in text:
        raise forms.ValidationError("JSON strings may not contain the NUL character (\\u0000).")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise forms.ValidationError(
            "JSON strings may not contain unpaired surrogate escapes (e.g. \\ud800)."
        ) from exc


class JSONTextField(forms.CharField):
    """A textarea holding JSON. Bad JSON is a form error that says where it broke."""

    widget = forms.Textarea

    def __init__(
        self, *, empty: Any = None, expect: type | None = dict, rows: int = 6, **kwargs: Any
    ) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        self.empty = empty if empty is not None else {}
        self.expect = expect
        super().__init__(**kwargs)
        self.widget.attrs.update({"class": "code", "spellcheck": "false", "rows": rows})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return self.empty
        try:
            parsed = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc
        except RecursionError as exc:
            raise forms.ValidationError(
                f"The JSON is nested more than {JSON_MAX_DEPTH} levels deep."
            ) from exc
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from exc
        _check_json_value(parsed, max_depth=JSON_MAX_DEPTH)
        if self.expect is dict and not isinstance(parsed, dict):
            raise forms.ValidationError(
                'Must be a JSON object in curly braces, e.g. {"max_amount": 500}.'
            )
        return parsed


class CommaListField(forms.CharField):
    """``"a, b, c"`` → ``["a", "b", "c"]`` (blanks dropped, duplicates folded, order kept)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 2000)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        items: list[str] = []
        for part in text.replace("\n", ",").split(","):
            part = part.strip()
            if part and part not in items:
                items.append(part)
        return items

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")

    def run_validators(self, value: Any) -> None:
        # max_length applies to the text as typed, checked in clean() below.
        pass

    def clean(self, value: Any) -> list[str]:
        if value and len(str(value)) > (self.max_length or 0):
            raise forms.ValidationError(
                f"Keep this under {self.max_length} characters (it has {len(str(value))})."
            )
        return super().clean(value)


def _model_choice(form: forms.Form, name: str) -> forms.ModelChoiceField:
    return cast(forms.ModelChoiceField, form.fields[name])


def _choice(form: forms.Form, name: str) -> forms.ChoiceField:
    return cast(forms.ChoiceField, form.fields[name])


def _environment_choices() -> list[tuple[str, str]]:
    return [(e.value, f"{e.label} ({e.value})") for e in Environment]


# --- service error mapping -------------------------------------------------------------------


def apply_service_error(form: forms.Form, exc: ApplicationError) -> None:
    """Put an ApplicationError's ``details`` on the matching fields, the rest on the form, and
    the summary message too when it says more than the field messages (e.g. which grants)."""
    said: set[str] = set()
    for field, messages in (exc.details or {}).items():
        for message in [messages] if isinstance(messages, str) else list(messages or []):
            message = str(message)
            said.update({message, f"{field}: {message}"})
            if field in form.fields:
                form.add_error(field, message)
            elif field in ("__all__", "non_field_errors"):
                form.add_error(None, message)
            else:
                form.add_error(None, f"{field}: {message}")
    if exc.message and exc.message not in said:
        form.add_error(None, exc.message)


# --- where a user may register ---------------------------------------------------------------


def registrable_departments(user: Any) -> QuerySet[Department]:
    scope = scope_of(user)
    if scope.is_admin or Role.OWNER in scope.org_wide_roles:
        return Department.objects.all()
    department_ids = [d for d, roles in scope.department_roles.items() if Role.OWNER in roles]
    team_ids = [t for t, roles in scope.team_roles.items() if Role.OWNER in roles]
    return Department.objects.filter(
        Q(pk__in=department_ids) | Q(teams__pk__in=team_ids)
    ).distinct()


def registrable_teams(user: Any) -> QuerySet[Team]:
    scope = scope_of(user)
    if scope.is_admin or Role.OWNER in scope.org_wide_roles:
        return Team.objects.select_related("department")
    department_ids = [d for d, roles in scope.department_roles.items() if Role.OWNER in roles]
    team_ids = [t for t, roles in scope.team_roles.items() if Role.OWNER in roles]
    return Team.objects.filter(
        Q(department_id__in=department_ids) | Q(pk__in=team_ids)
    ).select_related("department")


def _reject_reserved_slug(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise forms.ValidationError(f"{value!r} is reserved; pick another slug.")


def _slug_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        max_length=SLUG_MAX,
        validators=[slug_validator, _reject_reserved_slug],
        help_text=help_text,
    )


def _owner_field(label: str = "Owner") -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        to_field_name="username",
        required=False,
        empty_label="— Unowned —",
        label=label,
        help_text="Admins can register on someone's behalf or transfer ownership.",
    )


class RegistryEntryForm(forms.Form):
    """What the agent, tool and memory store forms share.

    ``entry=None`` registers a new one; editing starts from the entry's values and drops the
    slug, which cannot change. Only admins pick an owner (themselves unless they choose someone
    else); everyone else owns what they register. ``service_data()`` is the ``data`` the
    create and update services take: the ``data_fields`` the form has.
    """

    data_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, user: Any, entry: Any = None, **kwargs: Any) -> None:
        if entry is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_from(entry)
        super().__init__(*args, **kwargs)
        self.user = user
        if entry is not None:
            del self.fields["slug"]
        if not scope_of(user).is_admin:
            del self.fields["owner"]
        elif entry is None:
            self.fields["owner"].initial = user.get_username()

    def initial_from(self, entry: Any) -> dict[str, Any]:
        raise NotImplementedError

    def service_data(self) -> dict[str, Any]:
        data = {k: self.cleaned_data[k] for k in self.data_fields if k in self.cleaned_data}
        if "data_classes" in data:
            data["data_classes"] = list(data["data_classes"])
        return data


# --- agents ----------------------------------------------------------------------------------

AGENT_DATA_FIELDS = (
    "name", "slug", "mission", "owner", "department", "team", "business_process",
    "model_family", "default_model", "providers", "autonomy_level", "environments", "status",
    "failure_posture", "shutdown_action", "shutdown_webhook", "shutdown_webhook_secret",
    "shutdown_contact", "shutdown_notes",
    "rollback_action", "rollback_contact", "rollback_notes", "tags", "instructions",
    "knowledge_base_version", "parameters",
)  # fmt: skip


class AgentForm(RegistryEntryForm):
    """Register or edit an agent. ``agent=None`` registers a new one."""

    data_fields = AGENT_DATA_FIELDS

    name = forms.CharField(
        max_length=NAME_MAX, help_text="What people call it, e.g. Claims triage."
    )
    slug = _slug_field(
        "Its id in URLs, manifests and the SDK; lowercase and hyphens. Cannot change later."
    )
    mission = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What this agent is for, in a sentence or two.",
    )
    owner = _owner_field()
    department = forms.ModelChoiceField(
        queryset=Department.objects.none(),
        to_field_name="slug",
        help_text="The cost centre it belongs to; you can choose where you hold the owner role.",
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label="— No team —",
        help_text="Optional; must be a team of the department.",
    )
    business_process = forms.CharField(
        max_length=200,
        required=False,
        help_text="The process it serves, e.g. First notice of loss.",
    )
    status = forms.ChoiceField(
        choices=AgentStatus.choices,
        initial=AgentStatus.DRAFT,
        help_text="Only active agents may run; suspended agents are refused at the decision point.",
    )
    model_family = forms.CharField(max_length=100, required=False, help_text="e.g. gpt-4.1, claude")
    default_model = forms.CharField(
        max_length=100, required=False, help_text="The exact model id, e.g. gpt-4.1-mini."
    )
    providers = CommaListField(
        max_length=700, help_text="Comma-separated, e.g. openai, azure-openai (at most 10)."
    )
    autonomy_level = forms.TypedChoiceField(
        choices=AutonomyLevel.choices,
        coerce=int,
        initial=AutonomyLevel.L1,
        help_text="L0 only suggests; L4 acts with no person in the loop.",
    )
    environments = forms.MultipleChoiceField(
        choices=_environment_choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Where it may run. Tool grants can only use these.",
    )
    failure_posture = forms.ChoiceField(
        choices=FailurePosture.choices,
        initial=FailurePosture.CLOSED,
        help_text="What the runtime answers when Tether cannot decide. Fail closed unless you are sure.",
    )
    shutdown_action = forms.CharField(
        max_length=500, required=False, label="Safe-state action",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What puts the work in a safe state when the agent is stopped.",
    )  # fmt: skip
    shutdown_webhook = forms.CharField(
        max_length=500, required=False, label="Safe-state webhook",
        validators=[validate_webhook_url],
        help_text="When a kill switch stops the agent, Tether POSTs a signed JSON message here "
        "and records the answer, e.g. https://agents.example.com/claims/safe-state.",
    )  # fmt: skip
    shutdown_webhook_secret = forms.CharField(
        max_length=WEBHOOK_SECRET_MAX, required=False, label="Webhook signing secret",
        validators=[validate_webhook_secret],
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text=f"At least {WEBHOOK_SECRET_MIN} characters; the receiver checks each call's "
        "HMAC-SHA256 signature with it. Never shown again.",
    )  # fmt: skip
    shutdown_contact = forms.CharField(max_length=200, required=False, label="Contact")
    shutdown_notes = forms.CharField(
        max_length=2000, required=False, label="Notes", widget=forms.Textarea(attrs={"rows": 2})
    )
    rollback_action = forms.CharField(
        max_length=500, required=False, label="Rollback action",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="How to undo what the agent did, e.g. revert to the previous version.",
    )  # fmt: skip
    rollback_contact = forms.CharField(max_length=200, required=False, label="Contact")
    rollback_notes = forms.CharField(
        max_length=2000, required=False, label="Notes", widget=forms.Textarea(attrs={"rows": 2})
    )
    tags = CommaListField(
        max_length=1000,
        help_text="Comma-separated lowercase words, e.g. claims, pii, customer-facing.",
    )
    instructions = forms.CharField(
        max_length=INSTRUCTIONS_MAX,
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "class": "code", "spellcheck": "false"}),
        help_text="The system prompt. Every change writes a new version with a diff.",
    )
    knowledge_base_version = forms.CharField(
        max_length=100, required=False, help_text="e.g. policies-2025-06"
    )
    parameters = JSONTextField(
        max_length=JSON_FIELD_MAX_BYTES * 2,
        rows=5,
        help_text='A JSON object of model parameters, e.g. {"temperature": 0.2}.',
    )
    change_summary = forms.CharField(
        max_length=300,
        required=False,
        label="Change summary",
        help_text="One line for the version history, e.g. Tightened refund wording.",
    )

    def __init__(self, *args: Any, user: Any, agent: Agent | None = None, **kwargs: Any) -> None:
        super().__init__(*args, user=user, entry=agent, **kwargs)
        self.agent = agent
        departments = registrable_departments(user)
        teams = registrable_teams(user)
        if agent is not None:
            # Keep the agent's current place selectable even if the editor may not register there.
            departments = Department.objects.filter(
                Q(pk__in=departments.values("pk")) | Q(pk=agent.department_id)
            )
            teams = Team.objects.filter(
                Q(pk__in=teams.values("pk")) | Q(pk=agent.team_id or 0)
            ).select_related("department")
        else:
            del self.fields["change_summary"]
        if agent is not None and agent.shutdown_webhook_secret:
            secret = self.fields["shutdown_webhook_secret"]
            secret.help_text = "A secret is set. Leave this empty to keep it, or enter a new one."
        _model_choice(self, "department").queryset = departments.order_by("name")
        _model_choice(self, "team").queryset = teams.order_by("department__name", "name")

    def initial_from(self, agent: Agent) -> dict[str, Any]:
        return {
            "name": agent.name,
            "mission": agent.mission,
            "owner": agent.owner.get_username() if agent.owner else None,
            "department": agent.department.slug,
            "team": agent.team.slug if agent.team else None,
            "business_process": agent.business_process,
            "status": agent.status,
            "model_family": agent.model_family,
            "default_model": agent.default_model,
            "providers": list(agent.providers),
            "autonomy_level": agent.autonomy_level,
            "environments": list(agent.environments),
            "failure_posture": agent.failure_posture,
            "shutdown_action": agent.shutdown_action,
            "shutdown_webhook": agent.shutdown_webhook,
            "shutdown_contact": agent.shutdown_contact,
            "shutdown_notes": agent.shutdown_notes,
            "rollback_action": agent.rollback_action,
            "rollback_contact": agent.rollback_contact,
            "rollback_notes": agent.rollback_notes,
            "tags": list(agent.tags),
            "instructions": agent.instructions,
            "knowledge_base_version": agent.knowledge_base_version,
            "parameters": dict(agent.parameters),
        }

    def service_data(self) -> dict[str, Any]:
        data = super().service_data()
        if not data.get("shutdown_webhook_secret"):  # write-only: empty keeps the current one
            data.pop("shutdown_webhook_secret", None)
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        department, team = cleaned.get("department"), cleaned.get("team")
        if department and team and team.department_id != department.pk:
            self.add_error(
                "team", f"{team.name} is in {team.department.name}, not {department.name}."
            )
        elif (
            self.agent is None
            and department
            and not can_create_agent(
                self.user, department_id=department.pk, team_id=team.pk if team else None
            )
        ):
            self.add_error(
                "team",
                f"You hold the owner role for a team in {department.name}, not the whole "
                "department: pick your team.",
            )
        return cleaned

    def summary(self) -> str:
        """The change summary for the version history (edits only; empty when registering)."""
        return self.cleaned_data.get("change_summary", "")


# --- grants and memory bindings --------------------------------------------------------------


class GrantForm(forms.Form):
    """Grant a tool to an agent (or change the grant). The actions offered are the tool's own."""

    tool = forms.ModelChoiceField(
        queryset=Tool.objects.none(),
        to_field_name="slug",
        empty_label="— Choose a tool —",
        help_text="Any tool in the catalogue; its risk class and approval gate come with it.",
    )
    actions = forms.MultipleChoiceField(
        choices=(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Only what the agent needs: a grant can allow read but not close.",
    )
    environments = forms.MultipleChoiceField(
        choices=_environment_choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="A subset of the environments the agent runs in.",
    )
    constraints = JSONTextField(
        max_length=JSON_FIELD_MAX_BYTES * 2,
        rows=4,
        help_text='Optional limits as a JSON object, e.g. {"max_amount": 500, "currency": "EUR"}.',
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional. After this the grant no longer allows anything (UTC).",
    )

    def __init__(
        self, *args: Any, user: Any, agent: Agent, tool: Tool | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent
        tools = Tool.objects.for_user(user).order_by("name")
        _model_choice(self, "tool").queryset = tools
        self.fields["tool"].label_from_instance = (  # type: ignore[attr-defined]
            lambda t: (
                f"{t.name} · {t.get_risk_class_display()} risk"
                + (" · approval required" if t.approval_required else "")
            )
        )
        if tool is None:
            # Which tool the actions belong to: the submitted one, or ?tool= when picking.
            chosen = self.data.get("tool") if self.is_bound else self.initial.get("tool")
            if isinstance(chosen, Tool):
                tool = chosen
            elif isinstance(chosen, str) and len(chosen) <= SLUG_MAX:
                tool = tools.filter(slug=chosen).first()
        else:
            self.fields["tool"].disabled = True
            self.fields["tool"].initial = tool.slug
        self.chosen_tool = tool
        _choice(self, "actions").choices = [(a, a) for a in (tool.actions if tool else [])]
        runs_in = ", ".join(agent.environments) or "no environment yet"
        envs_help = f"A subset of the environments {agent.name} runs in: {runs_in}."
        self.fields["environments"].help_text = envs_help

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is not None and "expires_at" in self.changed_data and value <= timezone.now():
            raise forms.ValidationError("Pick a moment in the future, or leave it empty.")
        return value

    def service_data(self) -> dict[str, Any]:
        """``grant_set``'s arguments besides the actor and the agent."""
        keys = ("tool", "actions", "environments", "constraints", "expires_at")
        return {key: self.cleaned_data[key] for key in keys}


class MemoryBindingForm(forms.Form):
    store = forms.ModelChoiceField(
        queryset=MemoryStore.objects.none(),
        to_field_name="slug",
        empty_label="— Choose a memory store —",
        label="Memory store",
    )
    access = forms.ChoiceField(
        choices=MemoryAccess.choices,
        initial=MemoryAccess.READ,
        widget=forms.RadioSelect,
        help_text="Forbidden stores can only be bound read-only.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _model_choice(self, "store").queryset = MemoryStore.objects.for_user(user).order_by("name")
        self.fields["store"].label_from_instance = (  # type: ignore[attr-defined]
            lambda s: f"{s.name} · {s.get_store_class_display()}"
        )

    def service_data(self) -> dict[str, Any]:
        """``memory_binding_set``'s arguments besides the actor and the agent."""
        return {"store": self.cleaned_data["store"], "access": self.cleaned_data["access"]}


class VersionCompareForm(forms.Form):
    """``?a=1&b=3`` on the diff page; the order does not matter."""

    a = forms.IntegerField(min_value=1, max_value=2_000_000_000)
    b = forms.IntegerField(min_value=1, max_value=2_000_000_000)


# --- tools and memory stores -----------------------------------------------------------------


def _data_class_field() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=DataClass.objects.order_by("sensitivity", "name"),
        to_field_name="slug",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Allowed data classes",
        help_text="The most sensitive data that may pass through. Leave all unticked for none.",
    )


TOOL_DATA_FIELDS = (
    "name", "slug", "description", "owner", "risk_class", "actions", "capabilities",
    "prohibitions", "input_schema", "output_schema", "rate_limit_per_minute",
    "cost_per_call_usd", "approval_required", "reversible", "rollback_hint", "preview_format",
    "blast_radius", "systems", "downstream_tools", "audit_event", "data_classes",
)  # fmt: skip

# One text input per blast radius key (``blast_radius_money``); clean() assembles the dict.
BLAST_RADIUS_HELP = {
    "records": "Where the arguments list the records touched, e.g. /ids or /claim_id.",
    "people": "Where they name the people reached, e.g. /to or /claimant_email.",
    "money": "Where they hold the amount, e.g. /amount.",
    "currency": "A pointer such as /currency, or a fixed code such as EUR.",
}


class ToolForm(RegistryEntryForm):
    data_fields = TOOL_DATA_FIELDS

    name = forms.CharField(max_length=NAME_MAX, help_text="e.g. CRM lookup")
    slug = _slug_field("The name agents call it by; lowercase and hyphens. Cannot change later.")
    description = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
    owner = _owner_field()
    risk_class = forms.ChoiceField(
        choices=RiskClass.choices,
        help_text="Critical tools should require approval; the home page flags those that do not.",
    )
    actions = CommaListField(
        required=True,
        max_length=1000,
        help_text="Comma-separated operations a grant can allow, e.g. read, update, close.",
    )
    capabilities = forms.CharField(
        max_length=2000, required=False, label="What it can do",
        widget=forms.Textarea(attrs={"rows": 3}),
    )  # fmt: skip
    prohibitions = forms.CharField(
        max_length=2000, required=False, label="What it must never do",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Stated limits, e.g. never deletes records, never emails outside the company.",
    )  # fmt: skip
    input_schema = JSONTextField(
        max_length=SCHEMA_MAX_BYTES * 2,
        label="Input JSON Schema",
        rows=14,
        help_text="JSON Schema 2020-12; arguments are validated against it at the decision point.",
    )
    output_schema = JSONTextField(
        max_length=SCHEMA_MAX_BYTES * 2,
        label="Output JSON Schema",
        rows=14,
        help_text="JSON Schema 2020-12 of what the tool returns.",
    )
    data_classes = _data_class_field()
    rate_limit_per_minute = forms.IntegerField(
        min_value=1,
        max_value=RATE_LIMIT_MAX,
        required=False,
        label="Rate limit (calls per minute)",
        help_text="Empty: no limit.",
    )
    cost_per_call_usd = forms.DecimalField(
        min_value=0,
        max_value=COST_PER_CALL_MAX,
        required=False,
        initial=0,
        label="Cost per call (USD)",
        help_text="What one call costs, e.g. 0.002 for a paid lookup; 0 or empty: nothing. "
        "Spend budgets count it. Rounded to six decimal places.",
    )
    approval_required = forms.BooleanField(
        required=False, help_text="Every call waits for a person's approval."
    )
    reversible = forms.BooleanField(
        required=False, initial=True, help_text="Can what it does be undone?"
    )
    rollback_hint = forms.CharField(
        max_length=500, required=False, help_text="How to undo a call, e.g. void the refund by id."
    )
    audit_event = forms.CharField(
        max_length=100, required=False, help_text="The event it emits, e.g. crm.record.updated"
    )
    preview_format = forms.ChoiceField(
        choices=[("", "— None declared —"), *PreviewFormat.choices],
        required=False,
        help_text="The preview an agent supplies with a gated call: current and proposed state, "
        "or a unified diff.",
    )
    blast_radius_records = forms.CharField(
        max_length=200, required=False, label="Records", help_text=BLAST_RADIUS_HELP["records"]
    )
    blast_radius_people = forms.CharField(
        max_length=200, required=False, label="People", help_text=BLAST_RADIUS_HELP["people"]
    )
    blast_radius_money = forms.CharField(
        max_length=200, required=False, label="Money", help_text=BLAST_RADIUS_HELP["money"]
    )
    blast_radius_currency = forms.CharField(
        max_length=200, required=False, label="Currency", help_text=BLAST_RADIUS_HELP["currency"]
    )
    systems = CommaListField(
        max_length=700,
        label="Systems it reaches",
        help_text="Comma-separated, e.g. Stripe, Ledger (at most 10).",
    )
    downstream_tools = CommaListField(
        max_length=700,
        label="Tools it sets off",
        help_text="Comma-separated slugs of registered tools, e.g. ledger-post, email-send.",
    )

    def __init__(self, *args: Any, user: Any, tool: Tool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, user=user, entry=tool, **kwargs)
        if tool is None and not self.is_bound:
            self.fields["input_schema"].initial = {"type": "object", "properties": {}}
            self.fields["output_schema"].initial = {"type": "object"}

    def clean_cost_per_call_usd(self) -> Decimal:
        """Empty is no cost; the service rounds to the micro-dollar."""
        value = self.cleaned_data.get("cost_per_call_usd")
        return value if value is not None else Decimal(0)

    def blast_radius_fields(self) -> list[forms.BoundField]:
        """The four pointer inputs, in reading order, for the template."""
        return [self[f"blast_radius_{key}"] for key in BLAST_RADIUS_KEYS]

    def clean(self) -> dict[str, Any]:
        """Assemble the blast radius from its four inputs; each pointer's error goes on its
        own input rather than on the form."""
        cleaned = super().clean() or {}
        pointers: dict[str, str] = {}
        for key in BLAST_RADIUS_KEYS:
            name = f"blast_radius_{key}"
            value = (cleaned.get(name) or "").strip()
            if not value:
                continue
            try:
                validate_blast_radius({key: value})
            except forms.ValidationError as exc:
                for message in exc.messages:
                    message = message.removeprefix(f"{key}: ")  # the input is labelled
                    self.add_error(name, message[:1].upper() + message[1:])
                continue
            pointers[key] = value
        cleaned["blast_radius"] = pointers
        return cleaned

    def initial_from(self, tool: Tool) -> dict[str, Any]:
        return {
            "name": tool.name, "description": tool.description,
            "owner": tool.owner.get_username() if tool.owner else None,
            "risk_class": tool.risk_class, "actions": list(tool.actions),
            "capabilities": tool.capabilities, "prohibitions": tool.prohibitions,
            "input_schema": tool.input_schema, "output_schema": tool.output_schema,
            "data_classes": [dc.slug for dc in tool.data_classes.all()],
            "rate_limit_per_minute": tool.rate_limit_per_minute,
            "cost_per_call_usd": tool.cost_per_call_text,
            "approval_required": tool.approval_required, "reversible": tool.reversible,
            "rollback_hint": tool.rollback_hint, "audit_event": tool.audit_event,
            "preview_format": tool.preview_format,
            **{
                f"blast_radius_{key}": (tool.blast_radius or {}).get(key, "")
                for key in BLAST_RADIUS_KEYS
            },
            "systems": list(tool.systems), "downstream_tools": list(tool.downstream_tools),
        }  # fmt: skip


MEMORY_DATA_FIELDS = (
    "name", "slug", "description", "store_class", "retention_days", "owner", "data_classes",
)  # fmt: skip


class MemoryStoreForm(RegistryEntryForm):
    data_fields = MEMORY_DATA_FIELDS

    name = forms.CharField(max_length=NAME_MAX, help_text="e.g. Claims case notes")
    slug = _slug_field("Its id in manifests; lowercase and hyphens. Cannot change later.")
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    owner = _owner_field()
    store_class = forms.ChoiceField(
        choices=MemoryClass.choices,
        label="Class",
        help_text="Forbidden stores are never written by agents; shared stores are read across agents.",
    )
    retention_days = forms.IntegerField(
        min_value=0,
        max_value=RETENTION_DAYS_MAX,
        required=False,
        label="Retention (days)",
        help_text="Empty: kept for the run (working) or until deleted.",
    )
    data_classes = _data_class_field()

    def __init__(
        self, *args: Any, user: Any, store: MemoryStore | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, user=user, entry=store, **kwargs)

    def initial_from(self, store: MemoryStore) -> dict[str, Any]:
        return {
            "name": store.name, "description": store.description,
            "owner": store.owner.get_username() if store.owner else None,
            "store_class": store.store_class, "retention_days": store.retention_days,
            "data_classes": [dc.slug for dc in store.data_classes.all()],
        }  # fmt: skip


# --- list filters ----------------------------------------------------------------------------


def _blank(choices: Iterable[tuple[str, str]], label: str) -> list[tuple[str, str]]:
    return [("", label), *choices]


class ListFilterForm(forms.Form):
    """GET filters for a list: a search box and the fields a subclass adds."""

    q = forms.CharField(max_length=100, required=False, label="Search")

    def filters(self) -> dict[str, str]:
        """The valid filters; a field with an error is reported and falls back to no filter."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {name: cleaned.get(name) or "" for name in self.fields if name not in self.errors}


class AgentFilterForm(ListFilterForm):
    owner = forms.ChoiceField(required=False, choices=())
    department = forms.ChoiceField(required=False, choices=())
    status = forms.ChoiceField(required=False, choices=_blank(AgentStatus.choices, "Any status"))
    risk = forms.ChoiceField(
        required=False, choices=_blank(RiskClass.choices, "Any risk"), label="Holds a tool of risk"
    )
    environment = forms.ChoiceField(
        required=False, choices=_blank(Environment.choices, "Any environment")
    )

    def __init__(
        self, *args: Any, owners: list[tuple[str, str]], departments: list[tuple[str, str]],
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        _choice(self, "owner").choices = [("", "Any owner"), ("none", "Unowned"), *owners]
        _choice(self, "department").choices = [("", "Any department"), *departments]


class ToolFilterForm(ListFilterForm):
    risk = forms.ChoiceField(required=False, choices=_blank(RiskClass.choices, "Any risk"))


class MemoryFilterForm(ListFilterForm):
    store_class = forms.ChoiceField(
        required=False, choices=_blank(MemoryClass.choices, "Any class"), label="Class"
    )
