"""The change events around a drift's onset: the agent's new versions (what each changed in
its behaviour snapshot: knowledge base, model, instructions, ...), and from the audit log its
promotions and rollbacks, and the policy edits and price changes that apply to every agent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from apps.audit.models import AuditEvent
from apps.registry.models import Agent, AgentVersion

from .describe import change_words, snapshot_changes

BEFORE = timedelta(hours=24)
AFTER = timedelta(hours=2)
VERSION_CREATED = "registry.agent_version.created"
RELEASE_ACTIONS = ("releases.version.promoted", "releases.version.rolled_back")
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
    start, end = onset - BEFORE, onset + AFTER
    events = _version_events(agent, start, end)
    about_agent = Q(target_type="agent", target_id=str(agent.pk), action__in=RELEASE_ACTIONS)
    rows = AuditEvent.objects.filter(
        about_agent | GLOBAL, occurred_at__gte=start, occurred_at__lte=end
    ).order_by("occurred_at", "id")[:200]
    for row in rows:
        words = change_words(row.action, row.before, row.after, row.message, row.target_repr)
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
    return sorted(events, key=lambda e: e.at)


def _version_events(agent: Agent, start: datetime, end: datetime) -> list[ChangeEvent]:
    """Each version created in the window, in words: what its snapshot changed."""
    versions = list(
        AgentVersion.objects.filter(agent=agent, created_at__lte=end).order_by("-number")[:50]
    )
    events = []
    for at, version in enumerate(versions):
        before = versions[at + 1] if at + 1 < len(versions) else None
        if version.created_at < start:
            break
        changed = snapshot_changes(before.snapshot, version.snapshot) if before else ""
        words = f"v{version.number}: {changed}" if changed else f"v{version.number} created"
        events.append(
            ChangeEvent(
                id=-version.pk,
                at=version.created_at,
                action=VERSION_CREATED,
                words=words,
                actor=version.created_by_name,
                about_agent=True,
            )
        )
    return events


def suspected_change(events: list[ChangeEvent], onset: datetime) -> ChangeEvent | None:
    """The likeliest cause: the last change to the agent itself at or before the onset (a new
    version, a promotion, a rollback), else the last change of any kind before it, else the
    first one after it."""
    before = [e for e in events if e.at <= onset + timedelta(minutes=5)]
    for pool in ([e for e in before if e.about_agent], before):
        if pool:
            return pool[-1]
    return events[0] if events else None
