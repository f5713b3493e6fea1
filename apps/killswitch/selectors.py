"""Reads of the kill switch, through the requesting user's scope."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from apps.accounts.models import Department, Team
from apps.accounts.permissions import scope_of
from apps.common.errors import NotFound
from apps.registry.models import CHANGE, Agent
from apps.traces.selectors import runs_for_user

from .constants import KillScope
from .models import KillSwitch


def kills_for_user(*, user: Any) -> QuerySet[KillSwitch]:
    """Admins see every switch; others those of the agents (and their runs) they may read."""
    rows = KillSwitch.objects.select_related("agent", "team", "department", "run__agent")
    if scope_of(user).is_admin:
        return rows
    agents = Agent.objects.for_user(user)
    return rows.filter(agent__in=agents) | rows.filter(run__agent__in=agents)


def kill_target(*, user: Any, scope: str, key: str) -> dict[str, Any]:
    """What ``scope`` names by ``key`` (a slug or a run id), as keyword arguments for
    ``services.kill_engage``, if the user may stop it: owners their agents and those agents'
    runs, admins anything. ``NotFound`` otherwise: nobody learns what they may not stop."""
    if scope == KillScope.GLOBAL and scope_of(user).is_admin:
        return {}
    owned = Agent.objects.for_user(user, CHANGE)
    if scope == KillScope.AGENT:
        agent = owned.filter(slug=key).first()
        if agent is not None:
            return {"agent": agent}
    elif scope == KillScope.RUN:
        try:
            run = runs_for_user(user=user).select_related("agent").filter(pk=key).first()
        except (ValueError, ValidationError):  # not a run id
            run = None
        if run is not None and owned.filter(pk=run.agent_id).exists():
            return {"run": run}
    elif scope_of(user).is_admin:
        if scope == KillScope.TEAM and (team := Team.objects.filter(slug=key).first()):
            return {"team": team}
        if scope == KillScope.DEPARTMENT and (
            department := Department.objects.filter(slug=key).first()
        ):
            return {"department": department}
    raise NotFound(f"Nothing to stop here for {scope} {key!r}.")
