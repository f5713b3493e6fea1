"""The people's side of the runtime API: agent credentials, delegations and budgets."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.views import current_user
from apps.common.api import (
    AbsoluteUrlField,
    ListFilterSerializer,
    StrictCharField,
    StrictSerializer,
    list_filters,
    object_response,
    paginated_response,
    validated,
)
from apps.common.errors import NotFound
from apps.registry.constants import Environment
from apps.registry.selectors import agent_get

from .. import selectors, services
from ..constants import (
    BUDGET_LIMIT_MAX,
    BUDGET_MODEL_MAX,
    BUDGET_NAME_MAX,
    BUDGET_SLUG_MAX,
    BudgetEdge,
    BudgetKind,
    BudgetScope,
)


class CredentialOutput(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    environment = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by_name")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "AgentCredential"

    def get_prefix(self, credential: object) -> str:
        return f"tth_agent_{credential.lookup}_…"  # type: ignore[attr-defined]


class CredentialIssueInput(StrictSerializer):
    environment = serializers.ChoiceField(choices=Environment.choices)
    name = StrictCharField(max_length=100)


class CredentialIssued(serializers.Serializer):
    credential = CredentialOutput()
    secret = serializers.CharField(help_text="Shown once: Bearer tth_agent_…")


def _issued(credential: object, plaintext: str) -> dict:
    return {"credential": CredentialOutput(credential).data, "secret": plaintext}


class CredentialListIssueApi(APIView):
    @extend_schema(
        responses={200: CredentialOutput(many=True)}, operation_id="agent_credentials_list"
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = agent_get(user=current_user(request), slug=slug)
        return Response(CredentialOutput(selectors.credential_list(agent=agent), many=True).data)

    @extend_schema(
        request=CredentialIssueInput,
        responses={201: CredentialIssued},
        operation_id="agent_credentials_issue",
    )
    def post(self, request: Request, slug: str) -> Response:
        user = current_user(request)
        agent = agent_get(user=user, slug=slug)
        data = validated(CredentialIssueInput, request.data)
        credential, issued = services.credential_issue(
            actor=user, agent=agent, environment=data["environment"], name=data["name"]
        )
        return Response(_issued(credential, issued.plaintext), status=201)


class CredentialRevokeApi(APIView):
    @extend_schema(request=None, responses={204: None}, operation_id="agent_credentials_revoke")
    def delete(self, request: Request, slug: str, credential_id: int) -> Response:
        user = current_user(request)
        credential = selectors.credential_get(user=user, slug=slug, credential_id=credential_id)
        services.credential_revoke(actor=user, credential=credential)
        return Response(status=204)


class CredentialRotateApi(APIView):
    @extend_schema(
        request=None, responses={201: CredentialIssued}, operation_id="agent_credentials_rotate"
    )
    def post(self, request: Request, slug: str, credential_id: int) -> Response:
        user = current_user(request)
        credential = selectors.credential_get(user=user, slug=slug, credential_id=credential_id)
        new, issued = services.credential_rotate(actor=user, credential=credential)
        return Response(_issued(new, issued.plaintext), status=201)


class DelegationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.CharField(source="agent.slug")
    tools = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Delegation"


class DelegationInput(StrictSerializer):
    agent = StrictCharField(max_length=60)
    expires_at = serializers.DateTimeField()
    tools = serializers.ListField(
        child=StrictCharField(max_length=60), max_length=100, required=False
    )
    note = StrictCharField(max_length=300, required=False, allow_blank=True)


class DelegationListCreateApi(APIView):
    @extend_schema(responses={200: DelegationOutput(many=True)}, operation_id="me_delegations_list")
    def get(self, request: Request) -> Response:
        return Response(
            DelegationOutput(
                selectors.delegation_list(person=current_user(request)), many=True
            ).data
        )

    @extend_schema(
        request=DelegationInput,
        responses={201: DelegationOutput},
        operation_id="me_delegations_create",
    )
    def post(self, request: Request) -> Response:
        user = current_user(request)
        data = validated(DelegationInput, request.data)
        agent = agent_get(user=user, slug=data["agent"])
        delegation = services.delegation_grant(
            person=user, agent=agent, expires_at=data["expires_at"],
            tools=data.get("tools"), note=data.get("note", ""),
        )  # fmt: skip
        return Response(DelegationOutput(delegation).data, status=201)


class DelegationRevokeApi(APIView):
    @extend_schema(request=None, responses={204: None}, operation_id="me_delegations_revoke")
    def delete(self, request: Request, delegation_id: int) -> Response:
        user = current_user(request)
        delegation = selectors.delegation_get(person=user, delegation_id=delegation_id)
        services.delegation_revoke(person=user, delegation=delegation)
        return Response(status=204)


# --- budgets ---------------------------------------------------------------------------------


@extend_schema_field(
    {"oneOf": [{"type": "number"}, {"type": "string", "example": "12.5"}], "example": 50000}
)
class BudgetLimitField(serializers.Field):
    """A positive number with at most four decimal places; as a JSON number or a string."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            return services.budget_limit(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def to_representation(self, value: Any) -> str:
        return format(value.normalize(), "f")


class BudgetOutput(serializers.Serializer):
    url = AbsoluteUrlField("runtime-people-api:budget-detail", lambda b: {"slug": b.slug})
    slug = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=BudgetKind.choices)
    scope = serializers.ChoiceField(choices=BudgetScope.choices)
    agent = serializers.CharField(source="agent.slug", allow_null=True, default=None)
    department = serializers.CharField(
        source="department.slug", allow_null=True, default=None,
        help_text="The department (department_month); null for a team budget, whose department "
        "is the team's.",
    )  # fmt: skip
    team = serializers.CharField(
        source="team.slug", allow_null=True, default=None,
        help_text="The team (team_month): the budget caps its agents' use together.",
    )  # fmt: skip
    limit = serializers.CharField(
        source="limit_text", help_text='A decimal string, e.g. "50000" or "12.5".'
    )
    edge = serializers.ChoiceField(choices=BudgetEdge.choices)
    degrade_to_model = serializers.CharField()
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Budget"


_FIXED_HINT = "Fixed when the budget is created; create a new budget (and disable this one)."


class BudgetCreateInput(StrictSerializer):
    name = StrictCharField(max_length=BUDGET_NAME_MAX)
    slug = StrictCharField(
        max_length=BUDGET_SLUG_MAX, required=False, allow_blank=True,
        help_text="Optional; made from the agent, team or department and the name when left out.",
    )  # fmt: skip
    kind = serializers.ChoiceField(choices=BudgetKind.choices)
    scope = serializers.ChoiceField(choices=BudgetScope.choices)
    agent = StrictCharField(
        max_length=60,
        required=False,
        help_text="The agent's slug (every scope but department_month and team_month).",
    )
    department = StrictCharField(
        max_length=60, required=False, help_text="The department's slug (department_month only)."
    )
    team = StrictCharField(
        max_length=60,
        required=False,
        help_text="The team's slug (team_month only): a monthly budget over every agent of the "
        "team. Its department is the team's; leave department out.",
    )
    limit = BudgetLimitField(help_text=f"Greater than 0, at most {BUDGET_LIMIT_MAX:,}.")
    edge = serializers.ChoiceField(choices=BudgetEdge.choices, required=False)
    degrade_to_model = StrictCharField(
        max_length=BUDGET_MODEL_MAX, required=False, allow_blank=True,
        help_text="The cheaper model a degrade edge answers with.",
    )  # fmt: skip
    enabled = serializers.BooleanField(required=False)

    class Meta:
        ref_name = "BudgetCreate"


class BudgetUpdateInput(StrictSerializer):
    read_only_hints = {key: _FIXED_HINT for key in services.BUDGET_FIXED_FIELDS}

    name = StrictCharField(max_length=BUDGET_NAME_MAX, required=False)
    limit = BudgetLimitField(required=False)
    edge = serializers.ChoiceField(choices=BudgetEdge.choices, required=False)
    degrade_to_model = StrictCharField(
        max_length=BUDGET_MODEL_MAX, required=False, allow_blank=True
    )
    enabled = serializers.BooleanField(required=False)

    class Meta:
        ref_name = "BudgetUpdate"


class BudgetFilter(ListFilterSerializer):
    agent = StrictCharField(
        max_length=60, required=False, help_text="Budgets that apply to this agent (its own, its "
        "department's and its team's)."
    )  # fmt: skip
    department = StrictCharField(
        max_length=60, required=False,
        help_text="Budgets over the department, one of its teams or one of its agents.",
    )  # fmt: skip
    team = StrictCharField(
        max_length=60, required=False, help_text="Budgets over the team or one of its agents."
    )
    scope = serializers.ChoiceField(choices=BudgetScope.choices, required=False)
    kind = serializers.ChoiceField(choices=BudgetKind.choices, required=False)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)

    class Meta:
        ref_name = "BudgetFilter"


_BUDGET_EXAMPLE = {
    "name": "Tokens per run",
    "kind": "tokens",
    "scope": "run",
    "agent": "claims-triage",
    "limit": 50000,
    "edge": "degrade",
    "degrade_to_model": "gpt-4.1-mini",
}
_TEAM_BUDGET_EXAMPLE = {
    "name": "Claims Ops monthly spend",
    "kind": "spend",
    "scope": "team_month",
    "team": "claims-ops",
    "limit": 400,
    "edge": "ask",
}


def _department(user: Any, slug: str) -> Any:
    """A department the user may see budgets of; 404 otherwise (as for an agent)."""
    department = selectors.budget_departments(user=user).filter(slug=slug).first()
    if department is None:
        raise NotFound(
            f"No department {slug!r} in your scope.",
            details={"department": ["No such department."]},
        )
    return department


def _team(user: Any, slug: str) -> Any:
    """A team whose budgets the user may see (its department's readers); 404 otherwise."""
    team = selectors.budget_teams(user=user).filter(slug=slug).first()
    if team is None:
        raise NotFound(f"No team {slug!r} in your scope.", details={"team": ["No such team."]})
    return team


class BudgetListCreateApi(APIView):
    @extend_schema(
        parameters=[BudgetFilter],
        responses={200: BudgetOutput(many=True)},
        operation_id="budgets_list",
        description="Budgets you may see: those over agents you can see, and the department "
        "and team budgets of departments you work in (or in one of whose teams) or see agents "
        "of.",
    )
    def get(self, request: Request) -> Response:
        filters = list_filters(request, BudgetFilter)
        budgets = selectors.budget_list(user=current_user(request), **filters)
        return paginated_response(
            request=request, view=self, queryset=budgets, serializer_class=BudgetOutput
        )

    @extend_schema(
        request=BudgetCreateInput,
        responses={201: BudgetOutput},
        operation_id="budgets_create",
        description="Create a budget over one agent (its owner or an admin) or, with scope "
        "department_month, over a department, or with team_month over one team of a "
        "department (an admin or finance over the department). Decisions see it at once.",
        examples=[
            OpenApiExample("Tokens per run, degrading", value=_BUDGET_EXAMPLE),
            OpenApiExample("A team's monthly spend, asking", value=_TEAM_BUDGET_EXAMPLE),
        ],
    )
    def post(self, request: Request) -> Response:
        user = current_user(request)
        data = validated(BudgetCreateInput, request.data)
        agent = agent_get(user=user, slug=data["agent"]) if data.get("agent") else None
        department = _department(user, data["department"]) if data.get("department") else None
        team = _team(user, data["team"]) if data.get("team") else None
        budget = services.budget_create(
            actor=user, name=data["name"], slug=data.get("slug", ""), kind=data["kind"],
            scope=data["scope"], limit=data["limit"], agent=agent, department=department,
            team=team, edge=data.get("edge", BudgetEdge.STOP),
            degrade_to_model=data.get("degrade_to_model", ""), enabled=data.get("enabled", True),
        )  # fmt: skip
        return object_response(request, BudgetOutput, budget, status=201)


class BudgetDetailApi(APIView):
    @extend_schema(responses={200: BudgetOutput}, operation_id="budgets_retrieve")
    def get(self, request: Request, slug: str) -> Response:
        budget = selectors.budget_get(user=current_user(request), slug=slug)
        return object_response(request, BudgetOutput, budget)

    @extend_schema(
        request=BudgetUpdateInput,
        responses={200: BudgetOutput},
        operation_id="budgets_update",
        description="Change the name, limit, edge, degrade model or enabled flag. Kind, scope, "
        "agent, department and team are fixed. `enabled: false` disables it (its ledger stays).",
    )
    def patch(self, request: Request, slug: str) -> Response:
        user = current_user(request)
        budget = selectors.budget_get(user=user, slug=slug)
        data = validated(BudgetUpdateInput, request.data)
        budget = services.budget_update(actor=user, budget=budget, data=data)
        return object_response(request, BudgetOutput, budget)

    @extend_schema(
        request=None,
        responses={204: None},
        operation_id="budgets_delete",
        description="Delete a budget nothing was charged to; one with a ledger answers 409 "
        "(disable it instead).",
    )
    def delete(self, request: Request, slug: str) -> Response:
        user = current_user(request)
        budget = selectors.budget_get(user=user, slug=slug)
        services.budget_delete(actor=user, budget=budget)
        return Response(status=204)
