"""Runtime reads, scoped by the registry's permission gate."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from apps.accounts.models import Department, Team
from apps.accounts.permissions import scope_of
from apps.registry.models import CHANGE, Agent
from apps.registry.selectors import agent_get

from .constants import BudgetScope
from .models import AgentCredential, Budget, Decision, Delegation


def credential_list(*, agent: Agent) -> QuerySet[AgentCredential]:
    return agent.credentials.select_related("agent").order_by("-created_at")


def credential_get(*, user: Any, slug: str, credential_id: int) -> AgentCredential:
    agent = agent_get(user=user, slug=slug)
    return get_object_or_404(
        AgentCredential.objects.select_related("agent"), pk=credential_id, agent=agent
    )


def delegation_list(*, person: Any) -> QuerySet[Delegation]:
    return Delegation.objects.filter(person=person).select_related("agent")


def delegation_get(*, person: Any, delegation_id: int) -> Delegation:
    return get_object_or_404(
        Delegation.objects.select_related("agent"), pk=delegation_id, person=person
    )


def decision_list(
    *, user: Any, agent: str = "", disposition: str = "", reason: str = ""
) -> QuerySet[Decision]:
    decisions = Decision.objects.filter(agent__in=Agent.objects.for_user(user)).select_related(
        "agent"
    )
    if agent:
        decisions = decisions.filter(agent__slug=agent)
    if disposition:
        decisions = decisions.filter(disposition=disposition)
    if reason:
        decisions = decisions.filter(reasons__icontains=f'"{reason}"')
    return decisions.order_by("-id")


# --- budgets ---------------------------------------------------------------------------------


# What a budget's "over" names and the Budgets page read: agent, department, team and its
# department (the team's department is where a team budget is listed).
_BUDGET_RELATED = ("agent", "department", "team", "team__department")


def _applies_to(*, agent_id: int, department_id: int, team_id: int | None) -> Q:
    """Every budget a decision of this agent checks: its own, its department's, its team's."""
    over = Q(agent_id=agent_id) | Q(scope=BudgetScope.DEPARTMENT_MONTH, department_id=department_id)
    if team_id is not None:
        over |= Q(scope=BudgetScope.TEAM_MONTH, team_id=team_id)
    return over


def budget_list(
    *,
    user: Any,
    agent: str = "",
    department: str = "",
    team: str = "",
    scope: str = "",
    kind: str = "",
    enabled: bool | None = None,
) -> QuerySet[Budget]:
    """Budgets the user may see. ``agent`` means every budget that applies to that agent:
    its own, its department's and its team's; ``department`` those over the department, its
    teams or its agents; ``team`` those over the team or its agents."""
    budgets = Budget.objects.for_user(user).select_related(*_BUDGET_RELATED)
    if agent:
        found = Agent.objects.for_user(user).filter(slug=agent)
        target = found.values("pk", "department_id", "team_id").first()
        if target is None:
            return budgets.none()
        budgets = budgets.filter(
            _applies_to(
                agent_id=target["pk"],
                department_id=target["department_id"],
                team_id=target["team_id"],
            )
        )
    if department:
        budgets = budgets.filter(
            Q(department__slug=department)
            | Q(team__department__slug=department)
            | Q(agent__department__slug=department)
        )
    if team:
        budgets = budgets.filter(Q(team__slug=team) | Q(agent__team__slug=team))
    if scope:
        budgets = budgets.filter(scope=scope)
    if kind:
        budgets = budgets.filter(kind=kind)
    if enabled is not None:
        budgets = budgets.filter(enabled=enabled)
    return budgets.order_by("name", "slug")


def budget_get(*, user: Any, slug: str, action: str = "view") -> Budget:
    """The budget, or 404 when it does not exist *or* the user may not see (or change) it."""
    return get_object_or_404(
        Budget.objects.for_user(user, action).select_related(*_BUDGET_RELATED), slug=slug
    )


def agent_budgets(*, agent: Agent) -> QuerySet[Budget]:
    """Every budget over an agent the caller already may see: its own, its department's and
    its team's."""
    over = _applies_to(agent_id=agent.pk, department_id=agent.department_id, team_id=agent.team_id)
    return Budget.objects.filter(over).select_related(*_BUDGET_RELATED).order_by("name", "slug")


def monthly_budgets(*, user: Any, departments: list[Department]) -> QuerySet[Budget]:
    """The Budgets page's: the user's department_month budgets over these departments and
    team_month budgets over their teams."""
    return (
        Budget.objects.for_user(user)
        .filter(
            Q(scope=BudgetScope.DEPARTMENT_MONTH, department__in=departments)
            | Q(scope=BudgetScope.TEAM_MONTH, team__department__in=departments)
        )
        .select_related(*_BUDGET_RELATED)
        .order_by("name", "slug")
    )


def can_change_budget(user: Any, budget: Budget) -> bool:
    return Budget.objects.for_user(user, CHANGE).filter(pk=budget.pk).exists()


def budget_departments(*, user: Any) -> QuerySet[Department]:
    """Departments whose budgets the user may read: any role there, or an agent they see."""
    scope = scope_of(user)
    if scope.reads_everything:
        return Department.objects.order_by("name")
    if not scope.has_any_role:
        return Department.objects.none()
    visible = Agent.objects.for_user(user).values("department_id")
    return (
        Department.objects.filter(
            Q(pk__in=visible)
            | Q(pk__in=list(scope.department_roles))
            | Q(teams__pk__in=list(scope.team_roles))
        )
        .distinct()
        .order_by("name")
    )


def budget_teams(*, user: Any) -> QuerySet[Team]:
    """Teams whose budgets the user may read: the teams of ``budget_departments``."""
    return (
        Team.objects.filter(department__in=budget_departments(user=user))
        .select_related("department")
        .order_by("department__name", "name")
    )
