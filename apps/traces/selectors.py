"""Reads for the trace fabric, each behind the requesting user's permissions."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from apps.accounts.permissions import scope_of
from apps.registry.models import Agent

from .models import Span, UnregisteredAgent


def unregistered_agents(*, user: Any) -> QuerySet[UnregisteredAgent]:
    """Agents that send spans but are in nobody's registry: a finding for admins only."""
    if not scope_of(user).is_admin:
        return UnregisteredAgent.objects.none()
    return UnregisteredAgent.objects.order_by("-last_seen_at")


def spans_for_user(*, user: Any) -> QuerySet[Span]:
    """Spans of the agents the user may read; spans of unregistered agents for admins only."""
    if scope_of(user).is_admin:
        return Span.objects.all()
    return Span.objects.filter(Q(agent__in=Agent.objects.for_user(user)))
