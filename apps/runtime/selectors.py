"""Runtime reads, scoped by the registry's permission gate."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from apps.registry.models import Agent
from apps.registry.selectors import agent_get

from .models import AgentCredential, Decision, Delegation


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
