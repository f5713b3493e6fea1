"""The runtime console: agent credentials, budgets, the decision explorer and delegations.

Views parse input, call a selector (reads) or a service (writes) and render. The registry's
permission gate decides: anyone with a role reads the agents in their scope, the agent's owner
or an admin changes them, and an agent outside someone's scope is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F, FloatField, QuerySet
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Department, Team
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.common.htmx import wants_fragment
from apps.common.tokens import IssuedToken
from apps.common.views import never_stored
from apps.registry.forms import apply_service_error
from apps.registry.models import CHANGE, Agent
from apps.registry.selectors import agent_get, can_change_agent

from . import selectors, services
from .constants import BudgetKind, BudgetScope
from .counters import CounterStoreUnavailable
from .decisions import budget_used
from .forms import BudgetForm, CredentialIssueForm, DecisionFilterForm, DelegationForm
from .models import AgentCredential, Budget, Decision, Delegation

DECISIONS_PER_PAGE = 100
RECENT_DECISIONS = 10
BIGINT_MAX = 2**63 - 1


def _error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _check_id(value: int) -> int:
    """A URL id beyond PostgreSQL's bigint would be a database error; it names nothing: 404."""
    if value > BIGINT_MAX:
        raise Http404("No such object.")
    return value


# --- the agent page's runtime cards ----------------------------------------------------------


def _budget_rows(user: Any, budgets: list[Budget]) -> tuple[list[dict[str, Any]], bool]:
    """Each budget with what is used now and whether the user may change it;
    (rows, counter store reachable)."""
    counted = [b for b in budgets if b.scope != BudgetScope.RUN and b.kind != BudgetKind.WALL_TIME]
    used: dict[int, float] = {}
    reachable = True
    if counted:
        try:
            used = budget_used(counted)
        except CounterStoreUnavailable:
            reachable = False
    changeable = set(
        Budget.objects.for_user(user, CHANGE)
        .filter(pk__in=[b.pk for b in budgets])
        .values_list("pk", flat=True)
    )
    rows = []
    for budget in budgets:
        limit = float(budget.limit)
        row: dict[str, Any] = {
            "budget": budget,
            "limit": limit,
            "per_run": False,
            "can_change": budget.pk in changeable,
        }
        if budget.pk in used:
            value = used[budget.pk]
            row.update(
                used=value,
                remaining=max(limit - value, 0.0),
                percent=min(round(100 * value / limit), 100) if limit > 0 else 100,
                over=value >= limit,
                low=0.75 * limit,
                high=0.9 * limit,
            )
        elif budget.scope == BudgetScope.RUN or budget.kind == BudgetKind.WALL_TIME:
            row["per_run"] = True
        rows.append(row)
    return rows, reachable


def _agent_budget_context(user: Any, agent: Agent) -> dict[str, Any]:
    budgets, budget_store_ok = _budget_rows(user, list(selectors.agent_budgets(agent=agent)))
    return {
        "agent": agent,
        "budget_rows": budgets,
        "budget_store_ok": budget_store_ok,
        "can_change_budgets": can_change_agent(user, agent),
    }


def agent_runtime_context(user: Any, agent: Agent) -> dict[str, Any]:
    """What the agent detail page shows of the runtime: credentials, decisions, budgets."""
    return {
        "credentials": list(selectors.credential_list(agent=agent)),
        "credential_form": CredentialIssueForm(agent=agent),
        "recent_decisions": list(agent.decisions.order_by("-id")[:RECENT_DECISIONS]),
        **_agent_budget_context(user, agent),
    }


# --- credentials -----------------------------------------------------------------------------


def _issued_page(
    request: HttpRequest, agent: Agent, credential: AgentCredential, issued: IssuedToken, *,
    rotated: AgentCredential | None = None,
) -> HttpResponse:  # fmt: skip
    context = {
        "section": "agents",
        "agent": agent,
        "credential": credential,
        "issued": issued.plaintext,
        "rotated": rotated,
    }
    return never_stored(render(request, "runtime/credential_issued.html", context, status=201))


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def credential_issue(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    if not can_change_agent(user, agent):
        return _error_page(
            request, 403, "Only the agent's owner or an admin can issue credentials."
        )
    form = CredentialIssueForm(request.POST if request.method == "POST" else None, agent=agent)
    if form.is_valid():
        try:
            credential, issued = services.credential_issue(
                actor=user,
                agent=agent,
                environment=form.cleaned_data["environment"],
                name=form.cleaned_data["name"],
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            return _issued_page(request, agent, credential, issued)
    status = 400 if form.is_bound else 200
    context = {"section": "agents", "agent": agent, "form": form}
    return render(request, "runtime/credential_form.html", context, status=status)


@login_required
@require_POST
def credential_rotate(request: HttpRequest, slug: str, credential_id: int) -> HttpResponse:
    user = current_user(request)
    credential = selectors.credential_get(
        user=user, slug=slug, credential_id=_check_id(credential_id)
    )
    agent = credential.agent
    if not can_change_agent(user, agent):
        return _error_page(request, 403, "Only the agent's owner or an admin can rotate it.")
    if credential.revoked_at is not None:
        messages.error(request, f"“{credential.name}” is already revoked; issue a new one.")
        return redirect(agent)
    try:
        new, issued = services.credential_rotate(actor=user, credential=credential)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(agent)
    return _issued_page(request, agent, new, issued, rotated=credential)


@login_required
@require_POST
def credential_revoke(request: HttpRequest, slug: str, credential_id: int) -> HttpResponse:
    user = current_user(request)
    credential = selectors.credential_get(
        user=user, slug=slug, credential_id=_check_id(credential_id)
    )
    agent = credential.agent
    if not can_change_agent(user, agent):
        return _error_page(request, 403, "Only the agent's owner or an admin can revoke it.")
    try:
        services.credential_revoke(actor=user, credential=credential)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Revoked “{credential.name}”. It and every run token it minted stop working at once.",
        )
    return redirect(agent)


# --- decision explorer -----------------------------------------------------------------------


def _explorer_decisions(user: Any, filters: dict[str, Any]) -> QuerySet[Decision]:
    decisions = selectors.decision_list(
        user=user,
        agent=filters.get("agent", ""),
        disposition=filters.get("disposition", ""),
        reason=filters.get("reason", ""),
    )
    if "tool" in filters:
        decisions = decisions.filter(target=filters["tool"])
    if "since" in filters:
        decisions = decisions.filter(created_at__gte=filters["since"])
    if "until" in filters:
        decisions = decisions.filter(created_at__lte=filters["until"])
    return decisions.annotate(duration_ms=Cast(F("duration_us"), FloatField()) / 1000.0)


@role_required
@require_http_methods(["GET"])
def decision_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = DecisionFilterForm(request.GET or None, user=user)
    filters = form.filters()
    page = Paginator(_explorer_decisions(user, filters), DECISIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "section": "decisions",
        "filter_form": form,
        "filtered": bool(filters),
        "page": page,
        "decisions": page.object_list,
    }
    return render(request, "runtime/decision_list.html", context)


@role_required
@require_http_methods(["GET"])
def decision_detail(request: HttpRequest, decision_id: int) -> HttpResponse:
    user = current_user(request)
    decision = (
        selectors.decision_list(user=user)
        .select_related("run")
        .annotate(duration_ms=Cast(F("duration_us"), FloatField()) / 1000.0)
        .filter(pk=_check_id(decision_id))
        .first()
    )
    if decision is None:
        raise Http404("No such decision.")
    context = {"section": "decisions", "decision": decision}
    return render(request, "runtime/decision_detail.html", context)


# --- delegations -----------------------------------------------------------------------------


@role_required
@require_http_methods(["GET", "POST"])
def delegation_list(request: HttpRequest) -> HttpResponse:
    """A person's standing delegations, and the form to grant one."""
    user = current_user(request)
    form = DelegationForm(request.POST if request.method == "POST" else None, user=user)
    if form.is_valid():
        try:
            delegation = services.delegation_grant(
                person=user,
                agent=form.cleaned_data["agent"],
                expires_at=form.cleaned_data["expires_at"],
                tools=form.cleaned_data["tools"],
                note=form.cleaned_data["note"],
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request,
                f"{delegation.agent.name} may now act on your behalf until "
                f"{delegation.expires_at:%Y-%m-%d %H:%M} UTC.",
            )
            return redirect("runtime:delegation-list")
    delegations: list[Delegation] = list(selectors.delegation_list(person=user))
    context = {
        "section": "delegations",
        "form": form,
        "delegations": delegations,
        "now": timezone.now(),
    }
    return render(request, "runtime/delegations.html", context, status=400 if form.errors else 200)


@role_required
@require_POST
def delegation_revoke(request: HttpRequest, delegation_id: int) -> HttpResponse:
    user = current_user(request)
    delegation = selectors.delegation_get(person=user, delegation_id=_check_id(delegation_id))
    try:
        services.delegation_revoke(person=user, delegation=delegation)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Revoked your delegation to {delegation.agent.name}; it ends at once."
        )
    return redirect("runtime:delegation-list")


# --- budgets ---------------------------------------------------------------------------------


def _safe_next(request: HttpRequest, fallback: str) -> str:
    """Where to go after a budget form: ``next`` when it is a path on this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def _budget_home(budget: Budget) -> str:
    if budget.agent is not None:
        return budget.agent.get_absolute_url() + "#budgets"
    if budget.team is not None:
        return reverse("runtime:department-budgets") + f"#team-{budget.team.slug}"
    return reverse("runtime:department-budgets") + f"#department-{budget.department_slug}"


def _budget_form_page(
    request: HttpRequest, form: BudgetForm, *, title: str, lede: str, action: str,
    back: str, agent: Agent | None = None, budget: Budget | None = None,
) -> HttpResponse:  # fmt: skip
    context = {
        "section": "agents" if agent is not None else "budgets",
        "form": form,
        "title": title,
        "lede": lede,
        "action": action,
        "back": back,
        "agent": agent,
        "budget": budget,
        "next": _safe_next(request, ""),
    }
    return render(request, "runtime/budget_form.html", context, status=400 if form.errors else 200)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET"])
def agent_budgets_panel(request: HttpRequest, slug: str) -> HttpResponse:
    """The agent page's budgets card alone: the page polls it, so use shows as it happens."""
    agent = agent_get(user=current_user(request), slug=slug)
    context = _agent_budget_context(current_user(request), agent)
    return render(request, "runtime/partials/agent_budgets.html", context)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def budget_create(request: HttpRequest, slug: str) -> HttpResponse:
    """A new budget over one agent (its owner or an admin)."""
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    if not can_change_agent(user, agent):
        return _error_page(request, 403, "Only the agent's owner or an admin can set its budgets.")
    form = BudgetForm(request.POST if request.method == "POST" else None, agent=agent)
    if form.is_valid():
        try:
            budget = services.budget_create(
                actor=user, agent=agent, kind=form.cleaned_data["kind"],
                scope=form.cleaned_data["scope"], **form.service_data(),
            )  # fmt: skip
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, f"Budget “{budget.name}” is in force from the next decision.")
            return redirect(agent.get_absolute_url() + "#budgets")
    return _budget_form_page(
        request, form, title=f"New budget · {agent.name}",
        lede=f"Limit what {agent.name} may use, and say what happens at the limit.",
        action=reverse("runtime:budget-create", args=[agent.slug]),
        back=agent.get_absolute_url() + "#budgets", agent=agent,
    )  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def budget_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    budget = selectors.budget_get(user=user, slug=slug)
    home = _budget_home(budget)
    if not selectors.can_change_budget(user, budget):
        return _error_page(
            request, 403, "Only the agent's owner or an admin (for a department or team budget: "
            "an admin or finance) can change this budget."
        )  # fmt: skip
    form = BudgetForm(request.POST if request.method == "POST" else None, budget=budget)
    if form.is_valid():
        try:
            budget = services.budget_update(actor=user, budget=budget, data=form.service_data())
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, f"Saved budget “{budget.name}”.")
            return redirect(_safe_next(request, home))
    return _budget_form_page(
        request, form, title=f"Edit budget · {budget.name}",
        lede=f"Over {budget.over_name}: "
        f"{budget.get_kind_display()}, {budget.get_scope_display().lower()}.",
        action=reverse("runtime:budget-edit", args=[budget.slug]),
        back=_safe_next(request, home), agent=budget.agent, budget=budget,
    )  # fmt: skip


def _after_budget_change(request: HttpRequest, user: Any, budget_home: str) -> HttpResponse:
    """The agent's budgets panel for an htmx swap; otherwise back where the button was."""
    panel_agent = request.POST.get("panel_agent", "")
    if panel_agent and wants_fragment(request):
        agent = agent_get(user=user, slug=panel_agent)
        context = {**_agent_budget_context(user, agent), "fragment": True}
        return render(request, "runtime/partials/agent_budgets.html", context)
    return redirect(_safe_next(request, budget_home))


@login_required
@require_POST
def budget_set_enabled(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    budget = selectors.budget_get(user=user, slug=slug)
    home = _budget_home(budget)
    enabled = request.POST.get("enabled") == "true"
    try:
        services.budget_set_enabled(actor=user, budget=budget, enabled=enabled)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Enabled “{budget.name}”: decisions check it again."
            if enabled
            else f"Disabled “{budget.name}”: decisions no longer check it; its ledger stays.",
        )
    return _after_budget_change(request, user, home)


@login_required
@require_POST
def budget_delete(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    budget = selectors.budget_get(user=user, slug=slug)
    home = _budget_home(budget)
    try:
        services.budget_delete(actor=user, budget=budget)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Deleted budget “{budget.name}”.")
    return _after_budget_change(request, user, home)


def _department_sections(
    departments: list[Department], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per department, its groups of budget rows: its own budgets (``team`` None) first, then
    each of its teams that has budgets, by name (``has_teams``: the page then labels the
    groups). Departments without budgets have no groups."""
    sections = []
    for department in departments:
        own = [r for r in rows if r["budget"].department_id == department.pk]
        teams: dict[int, dict[str, Any]] = {}
        for row in rows:
            team = row["budget"].team
            if team is not None and team.department_id == department.pk:
                teams.setdefault(team.pk, {"team": team, "rows": []})["rows"].append(row)
        groups: list[dict[str, Any]] = [{"team": None, "rows": own}] if own else []
        groups += sorted(teams.values(), key=lambda group: group["team"].name)
        sections.append({"department": department, "groups": groups, "has_teams": bool(teams)})
    return sections


@role_required
@require_http_methods(["GET", "POST"])
def department_budgets(request: HttpRequest) -> HttpResponse:
    """Monthly budgets over departments and their teams with their use this month, and the form
    to set one."""
    user = current_user(request)
    departments = list(selectors.budget_departments(user=user))
    writable = [d for d in departments if services.can_change_department_budgets(user, d)]
    form = None
    if writable:
        choices = Department.objects.filter(pk__in=[d.pk for d in writable]).order_by("name")
        teams = Team.objects.filter(department__in=choices).order_by("department__name", "name")
        form = BudgetForm(
            request.POST if request.method == "POST" else None, departments=choices, teams=teams
        )
        if form.is_valid():
            try:
                budget = services.budget_create(
                    actor=user, kind=form.cleaned_data["kind"], **form.monthly_owner(),
                    **form.service_data(),
                )  # fmt: skip
            except ApplicationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(
                    request, f"Budget “{budget.name}” is in force from the next decision."
                )
                return redirect(_budget_home(budget))
    elif request.method == "POST":
        return _error_page(
            request, 403, "Only an admin or finance can set department and team budgets."
        )
    budgets = list(selectors.monthly_budgets(user=user, departments=departments))
    rows, store_ok = _budget_rows(user, budgets)
    context = {
        "section": "budgets",
        "sections": _department_sections(departments, rows),
        "any_budgets": bool(budgets),
        "budget_store_ok": store_ok,
        "form": form,
        "month": timezone.now().strftime("%B %Y"),
    }
    status = 400 if form is not None and form.errors else 200
    return render(request, "runtime/department_budgets.html", context, status=status)
