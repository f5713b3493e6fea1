"""The change events around a drift's onset, read from the audit log: what was changed to the
agent (versions, knowledge base, model, instructions, promotions, rollbacks), and the policy
edits and price changes that apply to every agent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from apps.audit.models import AuditEvent
from apps.registry.models import Agent

from .describe import change_words

BEFORE = timedelta(hours=24)
AFTER = timedelta(hours=2)
AGENT_ACTIONS = ("registry.agent.updated", "registry.agent_version.created")
GLOBAL = Q(action__startswith="policy.") | Q(action="costs.price.set")


@dataclass(frozen=True)
class ChangeEvent:
    id: int
    at: datetime
    action: str
    words: str
    actor: str
    about_agent: bool


def change_events(agent: Agent, onset: datetime) -> list[ChangeEvent]:
    """What changed from a day before ``onset`` to two hours after, oldest first."""
    about_agent = Q(target_type="agent", target_id=str(agent.pk)) & (
        Q(action__in=AGENT_ACTIONS) | Q(action__startswith="releases.")
    )
    rows = AuditEvent.objects.filter(
        about_agent | GLOBAL, occurred_at__gte=onset - BEFORE, occurred_at__lte=onset + AFTER
    ).order_by("occurred_at", "id")[:200]
    events = []
    for row in rows:
        words = change_words(row.action, row.before, row.after, row.message, row.target_repr)
        if words:
            events.append(
                ChangeEvent(
                    id=row.pk,
                    at=row.occurred_at,
                    action=row.action,
                    words=words,
                    actor=row.actor_name,
                    about_agent=row.target_type == "agent",
                )
            )
    return events


def suspected_change(events: list[ChangeEvent], onset: datetime) -> ChangeEvent | None:
    """The likeliest cause: the last change to the agent itself at or before the onset (a
    version being created is the consequence of its update: the update's words say more),
    else the last change of any kind before it, else the first one after it."""
    before = [e for e in events if e.at <= onset + timedelta(minutes=5)]
    for pool in ([e for e in before if e.about_agent and e.action != AGENT_ACTIONS[1]], before):
        if pool:
            return pool[-1]
    return events[0] if events else None
