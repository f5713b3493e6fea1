"""Reads of approval requests, each through the requesting user's scope.

Who may **read** a request: whoever may read its agent (the registry's gate). Who may
**answer** it: an approver whose role covers the agent's department or team, an
organisation-wide approver, an admin, or someone holding such authority by an active
delegation. Separation of duties then takes the agent's owner and the run's on_behalf_of
person out of a critical request (:func:`answer_block`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.accounts.constants import Role
from apps.accounts.models import User
from apps.accounts.permissions import Scope, scope_of
from apps.common.errors import NotFound
from apps.registry.constants import RiskClass
from apps.registry.models import Agent

from .constants import INBOX_PAGE, ApprovalStatus, Verdict
from .models import ApprovalDelegation, ApprovalRequest, RiskGate


@dataclass(frozen=True)
class Authority:
    """Approval authority one user holds: their own, or lent by ``acting_for``."""

    scope: Scope
    acting_for: User | None = None

    def covers(self, approval: ApprovalRequest) -> bool:
        return self.scope.covers(
            Role.APPROVER, department_id=approval.department_id, team_id=approval.team_id
        )

    def filter(self) -> Q | None:
        """The requests this authority covers, as a query (None: all of them)."""
        scope = self.scope
        if scope.is_admin or Role.APPROVER in scope.org_wide_roles:
            return None
        departments = [d for d, roles in scope.department_roles.items() if Role.APPROVER in roles]
        teams = [t for t, roles in scope.team_roles.items() if Role.APPROVER in roles]
        return Q(department_id__in=departments) | Q(team_id__in=teams)


def authorities_of(user: Any) -> list[Authority]:
    """The user's own authority, then each active delegation's (newest first).

    Kept on the user object for the rest of the request, as ``scope_of`` keeps the scope (a
    page asks several times: the queue, its counts, the navigation), and read again whenever
    the scope itself is read again (``forget_scope``)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []
    scope = scope_of(user)
    cached = getattr(user, "_tether_approval_authorities", None)
    if cached is not None and cached[0] is scope:
        return list(cached[1])
    now = timezone.now()
    found = [Authority(scope)]
    delegations = (
        ApprovalDelegation.objects.filter(
            delegate=user, revoked_at__isnull=True, starts_at__lte=now, ends_at__gt=now
        )
        .select_related("delegator")
        .order_by("-starts_at")
    )
    for delegation in delegations:
        found.append(Authority(scope_of(delegation.delegator), acting_for=delegation.delegator))
    user._tether_approval_authorities = (scope, tuple(found))
    return found


def may_approve_anything(user: Any) -> bool:
    return any(a.scope.is_admin or a.scope.has_role(Role.APPROVER) for a in authorities_of(user))


def authority_for(user: Any, approval: ApprovalRequest) -> Authority | None:
    """The authority under which ``user`` may answer ``approval`` (their own first)."""
    for authority in authorities_of(user):
        if authority.covers(approval):
            return authority
    return None


def answer_block(user: Any, approval: ApprovalRequest, authority: Authority | None) -> str:
    """Why ``user`` may not answer this request, in words; '' when they may."""
    if authority is None:
        return "You hold no approver role over this agent's department or team."
    if approval.risk_class == RiskClass.CRITICAL:
        people = {user.pk} | ({authority.acting_for.pk} if authority.acting_for else set())
        if approval.owner_id in people:
            return "Separation of duties: the agent's owner cannot approve its critical actions."
        if approval.on_behalf_of_id in people:
            return (
                "Separation of duties: the person this run acts for cannot approve its "
                "critical actions."
            )
    if approval.votes.filter(approver=user, verdict=Verdict.APPROVE).exists():
        return "You approved this already; it needs another approver."
    return ""


def approvals_for_user(*, user: Any) -> QuerySet[ApprovalRequest]:
    """Every request the user may read (those of the agents they may read)."""
    agents = Agent.objects.for_user(user)
    return ApprovalRequest.objects.filter(agent__in=agents.values("pk"))


def approval_get(*, user: Any, approval_id: Any) -> ApprovalRequest:
    found = (
        approvals_for_user(user=user)
        .select_related(
            "agent", "agent__owner", "tool", "run", "owner", "on_behalf_of", "department", "team"
        )
        .filter(pk=approval_id)
        .first()
    )
    if found is None:
        raise NotFound("No such approval request.")
    return found


def inbox_for_user(
    *, user: Any, sort: str = "deadline", risk: str = ""
) -> QuerySet[ApprovalRequest]:
    """The pending requests the user may answer, by their own or delegated authority.

    Critical requests of agents they own, or of runs acting for them, are left out
    (separation of duties): they stay visible on the request's page, not in the queue.
    """
    conditions: Q | None = Q(pk__in=[])
    for authority in authorities_of(user):
        covered = authority.filter()
        if covered is None:
            conditions = None
            break
        conditions = conditions | covered if conditions is not None else covered
    pending = ApprovalRequest.objects.pending().filter(expires_at__gt=timezone.now())
    if conditions is not None:
        pending = pending.filter(conditions)
    pending = pending.exclude(
        Q(risk_class=RiskClass.CRITICAL) & (Q(owner=user) | Q(on_behalf_of=user))
    ).exclude(votes__approver=user, votes__verdict=Verdict.APPROVE)
    if risk:
        pending = pending.filter(risk_class=risk)
    order = {
        "deadline": ["expires_at", "created_at"],
        "age": ["created_at"],
        "newest": ["-created_at"],
    }
    return (
        pending.select_related("agent", "tool", "run", "on_behalf_of")
        .annotate(approved_count=Count("votes", filter=Q(votes__verdict=Verdict.APPROVE)))
        .order_by(*order.get(sort, order["deadline"]))
    )


def inbox_counts(*, user: Any) -> dict[str, int]:
    """Pending requests the user may answer, by risk class (every class present, 0 or more)."""
    rows = (
        inbox_for_user(user=user)
        .order_by()
        .values("risk_class")
        .annotate(n=Count("pk", distinct=True))
    )
    counts = {risk: 0 for risk in RiskClass.values}
    counts.update({row["risk_class"]: row["n"] for row in rows})
    counts["all"] = sum(counts[r] for r in RiskClass.values)
    return counts


def inbox_page(*, user: Any, sort: str = "deadline", risk: str = "") -> list[ApprovalRequest]:
    return list(inbox_for_user(user=user, sort=sort, risk=risk)[:INBOX_PAGE])


def decided_for_user(*, user: Any, limit: int = 50) -> list[ApprovalRequest]:
    """Recently answered or closed requests the user may read."""
    return list(
        approvals_for_user(user=user)
        .exclude(status=ApprovalStatus.PENDING)
        .select_related("agent", "tool")
        .order_by("-decided_at", "-created_at")[:limit]
    )


def gates_table() -> list[RiskGate]:
    return list(RiskGate.objects.select_related("agent").order_by("agent__slug", "risk_class"))


def delegations_for_user(*, user: Any) -> QuerySet[ApprovalDelegation]:
    scope = scope_of(user)
    rows = ApprovalDelegation.objects.select_related("delegator", "delegate")
    if scope.is_admin:
        return rows
    return rows.filter(Q(delegator=user) | Q(delegate=user))
