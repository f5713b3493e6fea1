"""Reads for the trace fabric, each behind the requesting user's permissions."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from apps.accounts.permissions import scope_of
from apps.registry.models import Agent

from .models import IngestKey, Span, UnregisteredAgent

BIGINT_MAX = 2**63 - 1


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


def ingest_key_list(*, user: Any) -> QuerySet[IngestKey]:
    """Ingest keys, newest first: admins only."""
    if not scope_of(user).is_admin:
        return IngestKey.objects.none()
    return IngestKey.objects.order_by("-created_at", "-pk")


def ingest_key_get(*, user: Any, key_id: int) -> IngestKey:
    """One ingest key; for anyone but an admin, or an id that names nothing, a 404."""
    if key_id > BIGINT_MAX:
        raise Http404("No such ingest key.")
    return get_object_or_404(ingest_key_list(user=user), pk=key_id)
