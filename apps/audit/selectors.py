"""Reads of the audit trail. The log is organisation-wide, so it is for admins and
organisation-wide auditors: a department-scoped role would otherwise read other departments'
changes through it."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from apps.accounts.constants import Role
from apps.accounts.permissions import scope_of

from .models import AuditEvent


def can_read_audit_log(user: Any) -> bool:
    scope = scope_of(user)
    return scope.is_admin or Role.AUDITOR in scope.org_wide_roles


def audit_event_list(
    *, user: Any, action: str = "", actor: str = "", target_type: str = "", target: str = ""
) -> QuerySet[AuditEvent]:
    """Events newest first, filtered: ``action`` exactly, or every action under a prefix ending
    in a dot (``registry.``); ``actor`` and ``target`` as case-insensitive substrings."""
    if not can_read_audit_log(user):
        return AuditEvent.objects.none()
    events = AuditEvent.objects.all()
    if action.endswith("."):
        events = events.filter(action__startswith=action)
    elif action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_name__icontains=actor)
    if target_type:
        events = events.filter(target_type=target_type)
    if target:
        events = events.filter(Q(target_repr__icontains=target) | Q(target_id=target))
    return events.order_by("-id")


def audit_filter_choices(*, user: Any) -> tuple[list[str], list[str]]:
    """The actions and target types that occur in the log, for the filter selects."""
    if not can_read_audit_log(user):
        return [], []
    actions = AuditEvent.objects.values_list("action", flat=True).distinct().order_by("action")
    types = (
        AuditEvent.objects.values_list("target_type", flat=True).distinct().order_by("target_type")
    )
    return list(actions), list(types)
