"""The runtime console: agent credentials, the decision explorer and personal delegations.

Views parse input, call a selector (reads) or a service (writes) and render. The registry's
permission gate decides: anyone with a role reads the agents in their scope, the agent's owner
or an admin changes them, and an agent outside someone's scope is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F, FloatField, Q, QuerySet
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.common.tokens import IssuedToken
from apps.registry.forms import apply_service_error
from apps.registry.models import CHANGE, Agent
from apps.registry.selectors import agent_get

from . import selectors, services
from .constants import BudgetKind, BudgetScope
from .counters import CounterStoreUnavailable, counter_store
from .forms import CredentialIssueForm, DecisionFilterForm, DelegationForm
from .models import AgentCredential, Budget, Decision, Delegation

DECISIONS_PER_PAGE = 100
RECENT_DECISIONS = 10
BIGINT_MAX = 2**63 - 1


def _error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _can_change(user: Any, agent: Agent) -> bool:
    return Agent.objects.for_user(user, CHANGE).filter(pk=agent.pk).exists()


def _check_id(value: int) -> int:
    """A URL id beyond PostgreSQL's bigint would be a database error; it names nothing: 404."""
    if value > BIGINT_MAX:
        raise Http404("No such object.")
    return value


def _no_store(response: HttpResponse) -> HttpResponse:
    """A page that shows a secret must not be kept by the browser or any cache."""
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


# --- the agent page's runtime cards ----------------------------------------------------------


def _budget_rows(agent: Agent) -> tuple[list[dict[str, Any]], bool]:
    """Each budget over the agent with what is used now; (rows, counter store reachable)."""
    budgets = list(
        Budget.objects.filter(
            Q(agent=agent)
            | Q(scope=BudgetScope.DEPARTMENT_MONTH, department_id=agent.department_id)
        ).order_by("name")
    )
    now = timezone.now()
    keyed: list[tuple[Budget, str]] = []
    for budget in budgets:
        if budget.scope == BudgetScope.RUN or budget.kind == BudgetKind.WALL_TIME:
            continue
        period = now.strftime("%Y-%m-%d" if budget.scope == BudgetScope.AGENT_DAY else "%Y-%m")
        keyed.append((budget, f"tether:budget:{budget.pk}:{period}"))
    used: dict[int, float] = {}
    reachable = True
    if keyed:
        try:
            values = counter_store().read([key for _b, key in keyed])
        except CounterStoreUnavailable:
            reachable = False
        else:
            used = {b.pk: v for (b, _key), v in zip(keyed, values, strict=True)}
    rows = []
    for budget in budgets:
        limit = float(budget.limit)
        row: dict[str, Any] = {"budget": budget, "limit": limit, "per_run": False}
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


def agent_runtime_context(user: Any, agent: Agent) -> dict[str, Any]:
    """What the agent detail page shows of the runtime: credentials, decisions, budgets."""
    budgets, budget_store_ok = _budget_rows(agent)
    return {
        "credentials": list(selectors.credential_list(agent=agent)),
        "credential_form": CredentialIssueForm(agent=agent),
        "recent_decisions": list(agent.decisions.order_by("-id")[:RECENT_DECISIONS]),
        "budget_rows": budgets,
        "budget_store_ok": budget_store_ok,
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
    return _no_store(render(request, "runtime/credential_issued.html", context, status=201))


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def credential_issue(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    if not _can_change(user, agent):
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
    if not _can_change(user, agent):
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
    if not _can_change(user, agent):
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
