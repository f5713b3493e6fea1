"""Reads of the kill switch, through the requesting user's scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from apps.accounts.models import Department, Team
from apps.accounts.permissions import scope_of
from apps.audit.models import AuditEvent
from apps.common.errors import NotFound
from apps.registry.models import CHANGE, Agent
from apps.runtime.models import Decision, Run
from apps.traces.selectors import runs_for_user

from .constants import KILL_TARGET, KillScope
from .models import KillSwitch, SafeStateAction


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


# The incident page shows each stopped run's last steps before the kill, for this many runs
# (the rest are listed with a link to their own timeline).
INCIDENT_RUNS_WITH_STEPS = 20
INCIDENT_STEPS_PER_RUN = 5
INCIDENT_RUNS_MAX = 500


@dataclass
class StoppedRun:
    run: Run
    last_steps: list[Decision]  # newest first, up to the kill
    steps_read: bool  # False past INCIDENT_RUNS_WITH_STEPS: see the run's own timeline


@dataclass
class KillIncident:
    kill: KillSwitch
    runs: list[StoppedRun]
    runs_total: int
    approvals: list[Any]  # the approval requests it cancelled
    safe_states: list[SafeStateAction]
    notices: list[NoticeRow]
    events: list[AuditEvent]  # about the switch itself: engaged, safe state, released


def kill_incident(*, kill: KillSwitch) -> KillIncident:
    """Everything the incident page of one engagement shows, in a constant number of queries
    (``kill`` comes from :func:`kills_for_user`)."""
    from apps.approvals.constants import ApprovalStatus
    from apps.approvals.models import ApprovalRequest

    runs = list(kill.runs.select_related("agent").order_by("started_at", "pk")[:INCIDENT_RUNS_MAX])
    with_steps = [r.pk for r in runs[:INCIDENT_RUNS_WITH_STEPS]]
    newest_first = Window(RowNumber(), partition_by=[F("run_id")], order_by=F("id").desc())
    steps = (
        Decision.objects.filter(run_id__in=with_steps, created_at__lte=kill.engaged_at)
        .annotate(rank=newest_first)
        .filter(rank__lte=INCIDENT_STEPS_PER_RUN)
        .order_by("run_id", "-id")
    )
    by_run: dict[Any, list[Decision]] = {}
    for step in steps:
        by_run.setdefault(step.run_id, []).append(step)
    return KillIncident(
        kill=kill,
        runs=[StoppedRun(r, by_run.get(r.pk, []), r.pk in with_steps) for r in runs],
        runs_total=kill.runs_killed,
        approvals=list(
            ApprovalRequest.objects.filter(
                run__in=kill.runs.all(), status=ApprovalStatus.CANCELLED
            ).select_related("tool", "agent")[:INCIDENT_RUNS_MAX]
        ),
        safe_states=kill_safe_states(kill=kill),
        notices=kill_notices(kill=kill),
        events=list(
            AuditEvent.objects.filter(target_type=KILL_TARGET, target_id=str(kill.pk)).order_by(
                "seq"
            )
        ),
    )


# --- notices and safe-state outcomes (apps/killswitch/notify.py) ---------------------------------


@dataclass(frozen=True)
class NoticeRow:
    """One notice as the incident page may show it: a webhook URL only shortened (a Slack
    URL is itself a credential), an address in full."""

    kind: str
    kind_label: str
    target: str
    channel: str | None  # the channel's name; None for an owner's email
    status: str
    status_label: str
    attempts: int
    last_error: str
    sent_at: Any


def kill_notices(*, kill: KillSwitch) -> list[NoticeRow]:
    """Who was told of ``kill`` (from :func:`kills_for_user`) and how sending went, in the
    order they were planned: the owners first, then the channels."""
    from apps.approvals.models import DeliveryStatus

    from .notify import notice_target_shown

    statuses = dict(DeliveryStatus.choices)
    return [
        NoticeRow(
            kind=notice.kind,
            kind_label=notice.get_kind_display(),
            target=notice_target_shown(notice),
            channel=notice.channel.name if notice.channel else None,
            status=notice.status,
            status_label=statuses.get(notice.status, notice.status),
            attempts=notice.attempts,
            last_error=notice.last_error,
            sent_at=notice.sent_at,
        )
        for notice in kill.notices.select_related("channel").order_by("created_at", "pk")
    ]


def kill_safe_states(*, kill: KillSwitch) -> list[SafeStateAction]:
    """The safe-state webhooks ``kill`` (from :func:`kills_for_user`) called, one per stopped
    agent that declares one, with their outcome: status, attempts, the receiver's HTTP status
    and the start of its answer, the last error."""
    return list(kill.safe_states.select_related("agent").order_by("agent__slug", "pk"))
