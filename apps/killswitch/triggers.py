"""Automatic triggers: an admin's rule (``KillTrigger``) has Tether engage the kill switch
itself — kill the run, kill the agent, or suspend the agent — with the same effects and audit
as a person pressing it, marked automatic.

Two ways in:

- :func:`triggers_evaluate`, run by the beat every few seconds (``killswitch.triggers``), reads
  the decision trail after the fact: repeated denials, budget-exhausted and circuit-open
  answers within a rule's window. Nothing here runs on the decision hot path; a decision is
  recorded and answered first, and a rule trips a few seconds later.
- :func:`trigger_fire` takes an event pushed from elsewhere (a critical drift alert) and fires
  the matching rules at once.

A rule never fires twice on the same target while what it did still holds: a run it killed
stays killed, an agent stays stopped while any switch over it is engaged, a suspended agent
until a person makes it active again. Once that is over, only evidence younger than the rule's
last firing on that target counts again: releasing a switch does not re-fire it on the
denials that engaged it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.registry import services as registry
from apps.registry.constants import AgentStatus
from apps.registry.models import Agent
from apps.runtime.constants import Disposition, Reason, RunState
from apps.runtime.models import Decision, Run

from .constants import KillScope, TriggerKind, TriggerResponse
from .models import KillTrigger
from .services import kill_engage, kill_in_force

logger = logging.getLogger(__name__)

FIRED_ACTION = "killswitch.trigger.fired"
TRIGGER_TARGET = "kill_trigger"

# The kinds read from the decision trail, and the reason code each one counts (denials count
# every deny). The others only fire when pushed (trigger_fire).
EVALUATED_REASON: dict[str, str | None] = {
    TriggerKind.DENIALS: None,
    TriggerKind.BUDGET_BREACH: Reason.BUDGET_EXHAUSTED,
    TriggerKind.CIRCUIT_BREAKER: Reason.CIRCUIT_OPEN,
}
# Denials that are Tether's own stops or outages, not the agent misbehaving: counting them
# would have a Redis outage (fail closed) or one switch cascade into kills across the fleet.
NOT_COUNTED = (
    Reason.RUN_KILLED,
    Reason.MEMORY_FROZEN,  # another agent's switch froze the store
    Reason.RUN_NOT_RUNNING,
    Reason.AGENT_NOT_ACTIVE,
    Reason.STORE_UNAVAILABLE,
)
# At most this many firings per rule per evaluation (the busiest targets first): a rule over
# every agent tripping at once must not hold one beat tick for minutes; the rest follow.
MAX_FIRINGS_PER_RULE = 25


@dataclass(frozen=True, slots=True)
class Firing:
    """What one rule did to one target."""

    rule_id: int
    response: str
    agent_id: int
    run_id: Any
    kill_id: int | None
    reason: str


def duration_text(seconds: int) -> str:
    """A window the way a person says it: 45 s, 5 min, 90 min, 2 h, 1 day."""
    if seconds < 60 or seconds % 60:
        return f"{seconds} s"
    if seconds < 2 * 3600 or seconds % 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 or seconds % 86400:
        return f"{seconds // 3600} h"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def trigger_name(rule: KillTrigger) -> str:
    """What the switch and the audit name as having engaged it: ``tether (<this>)``."""
    return f"rule '{rule.name}'"[:100]


# --- what tripped a rule ---------------------------------------------------------------------


def _matching(rule: KillTrigger, since: datetime) -> QuerySet[Decision]:
    """The rule's kind of decision since ``since``, in its agent or department. Every kind
    counted is a deny, so the scan starts from the index on ``created_at`` and reads only the
    denials of the window."""
    rows = Decision.objects.filter(created_at__gte=since, disposition=Disposition.DENY)
    if rule.agent_id is not None:
        rows = rows.filter(agent_id=rule.agent_id)
    if rule.department_id is not None:
        rows = rows.filter(agent__department_id=rule.department_id)
    reason = EVALUATED_REASON[rule.kind]
    if reason is not None:
        # As text, like the decision list's filter: the embedded SQLite default has no JSON
        # containment, and a code is quoted whole so one never matches another's prefix.
        return rows.filter(reasons__icontains=f'"{reason}"')
    not_counted = Q()
    for code in NOT_COUNTED:
        not_counted |= Q(reasons__icontains=f'"{code}"')
    return rows.exclude(not_counted)


def _what(rule: KillTrigger, count: int, since_text: str) -> str:
    if rule.kind == TriggerKind.BUDGET_BREACH:
        return f"{_plural(count, 'budget-exhausted denial')} {since_text}"
    if rule.kind == TriggerKind.CIRCUIT_BREAKER:
        return f"circuit breaker open {_plural(count, 'time')} {since_text}"
    return f"{_plural(count, 'denial')} {since_text}"


def _last_firings(rule: KillTrigger, since: datetime) -> dict[tuple[str, str], datetime]:
    """When the rule last fired on each target since ``since``, from its audit events: the
    index on (target type, target id) reads only this rule's few firings."""
    events = AuditEvent.objects.filter(
        target_type=TRIGGER_TARGET,
        target_id=str(rule.pk),
        action=FIRED_ACTION,
        occurred_at__gte=since,
    ).values_list("after", "occurred_at")
    last: dict[tuple[str, str], datetime] = {}
    for after, occurred_at in events:
        after = after or {}
        for key in (("run", str(after.get("run"))), ("agent", str(after.get("agent")))):
            if key[1] != "None" and (key not in last or last[key] < occurred_at):
                last[key] = occurred_at
    return last


def _tripped(rule: KillTrigger, now: datetime) -> list[tuple[Agent, Run | None, str]]:
    """The targets that tripped the rule now — (agent, run or None, what tripped it) — busiest
    first, leaving out those it already stopped."""
    # Nothing from before the rule existed: creating one does not act on history.
    since = max(now - timedelta(seconds=rule.window_seconds), rule.created_at)
    per_run = rule.response == TriggerResponse.KILL_RUN
    keys = ("run_id", "agent_id") if per_run else ("agent_id",)
    rows = _matching(rule, since)
    if per_run:
        rows = rows.filter(run_id__isnull=False)
    groups = list(
        rows.values(*keys)
        .annotate(n=Count("id"))
        .filter(n__gte=rule.threshold)
        .order_by("-n", *keys)[: MAX_FIRINGS_PER_RULE * 2]
    )
    if not groups:
        return []
    fired = _last_firings(rule, since)
    agents = Agent.objects.select_related("department").in_bulk({g["agent_id"] for g in groups})
    runs = (
        Run.objects.select_related("agent").in_bulk([g["run_id"] for g in groups])
        if per_run
        else {}
    )
    window = f"in {duration_text(rule.window_seconds)}"
    found: list[tuple[Agent, Run | None, str]] = []
    for group in groups:
        agent, run = agents.get(group["agent_id"]), runs.get(group.get("run_id"))
        if agent is None or (per_run and run is None) or not _eligible(rule, agent, run):
            continue
        count = group["n"]
        key = ("run", str(run.pk)) if run is not None else ("agent", str(agent.pk))
        if key in fired:  # fired on it before: only what came after counts again
            recent = _matching(rule, fired[key]).filter(
                **({"run_id": run.pk} if run is not None else {"agent_id": agent.pk})
            )
            count = recent.count()
            if count < rule.threshold:
                continue
        on = f"run {str(run.pk)[:8]} of {agent.slug}" if run is not None else f"agent {agent.slug}"
        found.append((agent, run, f"{_what(rule, count, window)} on {on}"))
        if len(found) >= MAX_FIRINGS_PER_RULE:
            break
    return found


def _eligible(rule: KillTrigger, agent: Agent, run: Run | None) -> bool:
    """Whether responding would change anything: a running run to kill, an agent not already
    stopped by some switch, an active agent to suspend."""
    if rule.response == TriggerResponse.KILL_RUN:
        return run is not None and run.state == RunState.RUNNING
    if rule.response == TriggerResponse.KILL_AGENT:
        return kill_in_force(agent) is None
    return agent.status == AgentStatus.ACTIVE


# --- responding ------------------------------------------------------------------------------


def _respond(rule_id: int, *, agent_id: int, run_id: Any, tripped: str) -> Firing | None:
    """Fire one rule on one target, in one transaction under a lock on the rule's row: a
    second evaluation or a pushed event racing this one waits, then finds the target stopped
    and does nothing. None when, read again under the lock, there is nothing to do."""
    with transaction.atomic():
        rule = KillTrigger.objects.select_for_update().filter(pk=rule_id, enabled=True).first()
        if rule is None:  # disabled or deleted meanwhile
            return None
        agent = Agent.objects.select_related("department").get(pk=agent_id)
        run = Run.objects.select_related("agent").get(pk=run_id) if run_id else None
        if not _eligible(rule, agent, run):
            return None
        reason = f"Automatic: rule '{rule.name}' — {tripped}"
        name = trigger_name(rule)
        kill_id: int | None = None
        per_run = rule.response == TriggerResponse.KILL_RUN
        if rule.response == TriggerResponse.SUSPEND_AGENT:
            actor = Actor.system(f"tether ({name})")
            if not registry.agent_suspend(actor=actor, agent=agent, reason=reason):
                return None
        else:
            kill = kill_engage(
                actor=None,
                scope=KillScope.RUN if per_run else KillScope.AGENT,
                run=run if per_run else None,
                agent=None if per_run else agent,
                reason=reason,
                trigger=name,
                trigger_rule=rule,
            )
            kill_id = kill.pk
        rule.last_fired_at = timezone.now()
        rule.save(update_fields=["last_fired_at"])
        audit_record(
            actor=Actor.system(f"tether ({name})"),
            action=FIRED_ACTION,
            target_type=TRIGGER_TARGET,
            target_id=rule.pk,
            target_repr=rule.name,
            after={
                "kind": rule.kind,
                "response": rule.response,
                "agent": agent.pk,
                "agent_slug": agent.slug,
                "run": str(run.pk) if run is not None else None,
                "kill": kill_id,
            },
            message=reason,
        )
    logger.info("kill trigger %s fired: %s", rule_id, reason)
    return Firing(rule_id, rule.response, agent.pk, run.pk if run else None, kill_id, reason)


def triggers_evaluate() -> list[Firing]:
    """Fire every enabled rule read from the decision trail on what tripped it within its
    window. One rule failing is logged and never keeps the others from being evaluated."""
    firings: list[Firing] = []
    rules = KillTrigger.objects.filter(enabled=True, kind__in=list(EVALUATED_REASON))
    for rule in rules.order_by("pk"):
        try:
            for agent, run, tripped in _tripped(rule, timezone.now()):
                firing = _respond(
                    rule.pk, agent_id=agent.pk, run_id=run.pk if run else None, tripped=tripped
                )
                if firing is not None:
                    firings.append(firing)
        except Exception:
            logger.exception("kill trigger %s (%s) could not be evaluated", rule.pk, rule.name)
    return firings


def trigger_fire(kind: str, agent: Agent, run: Run | None = None, detail: str = "") -> list[Firing]:
    """An event pushed from elsewhere — a critical drift alert on ``agent`` — fires every
    enabled rule of that kind over the agent (any agent, its department's, or it alone) at
    once. One event is one occurrence, so rules that need more (a threshold above 1) are left
    to the evaluation; a rule that kills the run does nothing for an event that names none."""
    rules = KillTrigger.objects.filter(enabled=True, kind=kind, threshold__lte=1).filter(
        Q(agent__isnull=True) | Q(agent_id=agent.pk),
        Q(department__isnull=True) | Q(department_id=agent.department_id),
    )
    label = TriggerKind(kind).label.lower() if kind in TriggerKind.values else kind
    what = f"{label} on {f'run {str(run.pk)[:8]} of ' if run else ''}agent {agent.slug}"
    if detail.strip():
        what = f"{what}: {detail.strip()}"
    firings: list[Firing] = []
    for rule in rules.order_by("pk"):
        if rule.response == TriggerResponse.KILL_RUN and run is None:
            logger.warning("kill trigger %s kills a run; the %s event names none", rule.pk, kind)
            continue
        firing = _respond(
            rule.pk, agent_id=agent.pk, run_id=run.pk if run else None, tripped=what[:700]
        )
        if firing is not None:
            firings.append(firing)
    return firings
